// The server's video through a bad link, as headless Chromium sees it. badlink.sh builds the
// namespaces (scripts/netem.sh: server | router with cmd/linkemu | client), starts
// cmd/e2eserver -kind flip in the server namespace and runs this, per profile, in the client
// namespace:
//
//   node badlink.mjs run --profile P --server http://10.211.1.2:8000 --out FILE
//        [--seconds 20] [--warmup 8] [--switch-at S] [--linkemu-pid PID] [--hint '']
//   node badlink.mjs report --profiles a,b,... [--assert]     # the table, e2e/out/badlink.json
//
// run: a proxy on 127.0.0.1 (a page on a non-loopback address is not a secure context)
// serves a blank page of its own and forwards everything else to the server. The page sends a
// 640x480 canvas at 30 fps: a moving, textured picture with a frame counter drawn as blocks
// on the top and bottom rows (the flip keeps them), 12 bits of counter and 4 of check. It
// reads the counter back from the returned track (MediaStreamTrackProcessor), so that the lag
// from canvas to decoded frame is taken on the page's one clock; polls getStats() every
// second and the server's /stats every two. After the warm-up (counted from ICE connected)
// it measures a window of --seconds: linkemu gets SIGUSR2 at its start and end (a snapshot
// of its counters) and, for a profile that switches (4to600), SIGUSR1 at --switch-at
// seconds into the window (default: half-way).
import http from 'node:http';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { OUT, launch } from './lib.mjs';

const argv = process.argv.slice(2);
const mode = argv[0];
const opt = (name, def) => (argv.includes('--' + name) ? argv[argv.indexOf('--' + name) + 1] : def);
const flag = (name) => argv.includes('--' + name);

// Runs in the page: one session, returns the raw measurements.
async function harness({ seconds, warmup, switchAt, hint }) {
  const W = 640, H = 480, BITS = 16, CW = W / BITS, CH = 48, TH = H - 2 * CH;
  const now = () => performance.now();
  const event = (name) => (window.__blEvent ? window.__blEvent(name).catch(() => {}) : null);
  const res = { events: {}, frames: [], lag: [], polls: [], server: [], sent: 0, received: 0, invalid: 0, repeated: 0, log: [] };
  const log = (s) => { res.log.push(Math.round(now()) + ' ' + s); };

  // A texture twice the width (seamless when it scrolls): a colour gradient, blobs, fine noise.
  let seed = 12345;
  const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
  const tile = new OffscreenCanvas(W, TH);
  const tg = tile.getContext('2d');
  const grad = tg.createLinearGradient(0, 0, W, TH);
  ['#1e3a5f', '#5f8a3a', '#a05a2c', '#3a2c6a', '#1e3a5f'].forEach((c, i) => grad.addColorStop(i / 4, c));
  tg.fillStyle = grad; tg.fillRect(0, 0, W, TH);
  for (let i = 0; i < 500; i++) {
    const s = 6 + rnd() * 34;
    tg.fillStyle = `hsla(${Math.floor(rnd() * 360)},${40 + Math.floor(rnd() * 50)}%,${25 + Math.floor(rnd() * 50)}%,0.55)`;
    const x = rnd() * (W - s), y = rnd() * (TH - s);
    if (i % 2) tg.fillRect(x, y, s, s); else { tg.beginPath(); tg.arc(x + s / 2, y + s / 2, s / 2, 0, 7); tg.fill(); }
  }
  const img = tg.getImageData(0, 0, W, TH);
  for (let i = 0; i < img.data.length; i += 4) { const d = (rnd() - 0.5) * 36; img.data[i] += d; img.data[i + 1] += d; img.data[i + 2] += d; }
  tg.putImageData(img, 0, 0);
  const tex = new OffscreenCanvas(2 * W, TH);
  const xg = tex.getContext('2d');
  xg.drawImage(tile, 0, 0); xg.drawImage(tile, W, 0);

  const canvas = document.createElement('canvas');
  canvas.width = W; canvas.height = H;
  const g = canvas.getContext('2d');
  const stream = canvas.captureStream(0);
  const track = stream.getVideoTracks()[0];
  if (hint) track.contentHint = hint;
  const code = (n) => ((n & 0xfff) << 4) | ((n ^ (n >> 4) ^ (n >> 8)) & 0xf);
  const draw = (n) => {
    g.drawImage(tex, (n * 4) % W, 0, W, TH, 0, CH, W, TH); // scrolls 120 px/s
    const x = (n * 6) % (W - 140), y = CH + 20 + Math.abs(((n * 3) % (2 * (TH - 140))) - (TH - 140));
    g.fillStyle = '#e0702a'; g.fillRect(x, y, 140, 100);
    g.fillStyle = '#fff'; g.font = 'bold 44px sans-serif'; g.fillText(String(n), W - 170 - x / 3, CH + 60);
    const c = code(n);
    for (let b = 0; b < BITS; b++) {
      g.fillStyle = (c >> (BITS - 1 - b)) & 1 ? '#fff' : '#000';
      g.fillRect(b * CW, 0, CW, CH);
      g.fillRect(b * CW, H - CH, CW, CH);
    }
  };

  const pc = new RTCPeerConnection();
  window.__blPC = pc;
  pc.addTransceiver(track, { direction: 'sendrecv', streams: [stream] });
  pc.createDataChannel('text');
  pc.onconnectionstatechange = () => log('connection ' + pc.connectionState);
  pc.oniceconnectionstatechange = () => log('ice ' + pc.iceConnectionState);
  const sentAt = new Map();
  let seen = -1, lastSent = null, stopped = false;

  pc.ontrack = async (e) => {
    if (e.track.kind !== 'video') return;
    const reader = new MediaStreamTrackProcessor({ track: e.track }).readable.getReader();
    const oc = new OffscreenCanvas(W, H);
    const og = oc.getContext('2d', { willReadFrequently: true });
    while (!stopped) {
      const { value: frame, done } = await reader.read();
      if (done) break;
      const t = now();
      const fw = frame.displayWidth, fh = frame.displayHeight;
      og.drawImage(frame, 0, 0, W, H);
      frame.close();
      const px = og.getImageData(0, 0, W, CH).data;
      let c = 0;
      for (let b = 0; b < BITS; b++) {
        let s = 0, k = 0;
        for (let yy = 12; yy < CH - 12; yy += 4) for (let xx = b * CW + 10; xx < (b + 1) * CW - 10; xx += 4) { s += px[(yy * W + xx) * 4 + 1]; k++; }
        c = (c << 1) | (s / k > 128 ? 1 : 0);
      }
      res.received++;
      const n = c >> 4;
      if (code(n) !== c || !sentAt.has(n)) { res.invalid++; continue; }
      if (n <= seen) { res.repeated++; continue; }
      seen = n;
      lastSent = sentAt.get(n);
      res.frames.push([Math.round(t), n, Math.round(t - lastSent), fw, fh]);
    }
  };

  draw(0);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); else { pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); setTimeout(r, 3000); } });
  const webrtcId = 'bl' + Math.random().toString(36).slice(2);
  const ans = await (await fetch('/webrtc/offer', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: 'offer', webrtc_id: webrtcId }) })).json();
  if (!ans.sdp) throw new Error('offer refused: ' + JSON.stringify(ans));
  await pc.setRemoteDescription(ans);
  res.events.answered = now();

  // 30 fps on a fixed schedule from the start (the camera does not wait for the network).
  const tStart = now();
  let n = 0, sending = true;
  const tick = () => {
    if (!sending) return;
    n = (n + 1) & 0xfff;
    draw(n);
    track.requestFrame();
    sentAt.set(n, now());
    res.sent++;
    setTimeout(tick, Math.max(0, tStart + res.sent * (1000 / 30) - now()));
  };
  tick();

  const poll = async () => {
    const st = await pc.getStats();
    const p = { t: Math.round(now()) };
    let pairId;
    st.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        p.in = { framesDecoded: r.framesDecoded, framesReceived: r.framesReceived, framesDropped: r.framesDropped, freezeCount: r.freezeCount,
          totalFreezesDuration: r.totalFreezesDuration, frameHeight: r.frameHeight, frameWidth: r.frameWidth, fps: r.framesPerSecond,
          nackCount: r.nackCount, pliCount: r.pliCount, firCount: r.firCount, packetsLost: r.packetsLost, packetsReceived: r.packetsReceived,
          bytesReceived: r.bytesReceived, jitterBufferDelay: r.jitterBufferDelay, jitterBufferEmittedCount: r.jitterBufferEmittedCount, keyFramesDecoded: r.keyFramesDecoded };
      }
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        p.out = { framesEncoded: r.framesEncoded, framesSent: r.framesSent, frameHeight: r.frameHeight, frameWidth: r.frameWidth, bytesSent: r.bytesSent,
          targetBitrate: r.targetBitrate, qualityLimitationReason: r.qualityLimitationReason, qualityLimitationDurations: r.qualityLimitationDurations,
          nackCount: r.nackCount, pliCount: r.pliCount, retransmittedBytesSent: r.retransmittedBytesSent };
      }
      if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
    });
    const pair = pairId && st.get(pairId);
    if (pair) {
      const l = st.get(pair.localCandidateId), rr = st.get(pair.remoteCandidateId);
      p.pair = { availableOutgoingBitrate: pair.availableOutgoingBitrate, currentRoundTripTime: pair.currentRoundTripTime,
        local: l && (l.candidateType + ' ' + l.address + ':' + l.port), remote: rr && (rr.candidateType + ' ' + rr.address + ':' + rr.port) };
    }
    res.polls.push(p);
    return p;
  };
  const pollServer = async () => {
    try {
      const r = await fetch('/stats?webrtc_id=' + encodeURIComponent(webrtcId));
      if (r.ok) res.server.push({ t: Math.round(now()), info: await r.json() });
    } catch (e) { /* the link may eat it */ }
  };

  // Wait for ICE (at most 20 s), then the warm-up and the window.
  const deadline = now() + 20000;
  while (pc.connectionState !== 'connected' && now() < deadline) {
    if (pc.connectionState === 'failed') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (pc.connectionState !== 'connected') {
    sending = false; stopped = true;
    res.error = 'not connected after 20 s: ' + pc.connectionState + ' / ice ' + pc.iceConnectionState;
    pc.close();
    return res;
  }
  const t0 = now();
  res.events.connected = t0;
  const pollTimer = setInterval(poll, 1000);
  const serverTimer = setInterval(pollServer, 2000);
  // The lag as a user sees it: now minus the capture time of the newest frame on screen,
  // every 50 ms (a freeze makes it grow).
  const lagTimer = setInterval(() => { if (lastSent != null) res.lag.push([Math.round(now()), Math.round(now() - lastSent)]); }, 50);
  const until = (t) => new Promise((r) => setTimeout(r, Math.max(0, t - now())));
  await until(t0 + warmup * 1000);
  res.events.windowStart = now();
  await event('window-start');
  res.startPoll = await poll();
  if (switchAt != null) {
    await until(t0 + (warmup + switchAt) * 1000);
    res.events.switch = now();
    await event('switch');
  }
  await until(t0 + (warmup + seconds) * 1000);
  res.events.windowEnd = now();
  res.endPoll = await poll();
  await event('window-end');
  clearInterval(pollTimer); clearInterval(serverTimer); clearInterval(lagTimer);
  sending = false; stopped = true;
  pc.close();
  return res;
}

const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] : null; };
const r1 = (x) => (x == null ? x : +x.toFixed(1));
const median = (a) => pct(a.filter((x) => x != null && !Number.isNaN(x)), 50);
const mode_ = (a) => { const m = new Map(); a.forEach((x) => x != null && m.set(x, (m.get(x) || 0) + 1)); let b = null, k = 0; m.forEach((v, x) => { if (v > k) { b = x; k = v; } }); return b; };

/** summarize turns a run's raw measurements into the per-profile figures. */
function summarize(raw, seconds) {
  const ws = raw.events.windowStart, we = raw.events.windowEnd;
  const a = raw.startPoll || {}, b = raw.endPoll || {};
  const dt = (b.t - a.t) / 1000 || seconds;
  const d = (side, k) => (b[side] && a[side] && b[side][k] != null ? (b[side][k] - (a[side][k] || 0)) : null);
  const inWin = raw.polls.filter((p) => p.t >= ws - 1 && p.t <= we + 1);
  const frames = raw.frames.filter((f) => f[0] >= ws && f[0] <= we);
  const lags = frames.map((f) => f[2]);
  const lagSamples = raw.lag.filter((l) => l[0] >= ws && l[0] <= we);
  const qld = {};
  if (a.out && b.out && b.out.qualityLimitationDurations) {
    for (const [k, v] of Object.entries(b.out.qualityLimitationDurations)) qld[k] = +(v - ((a.out.qualityLimitationDurations || {})[k] || 0)).toFixed(1);
  }
  const srv = raw.server.filter((s) => s.t >= ws && s.t <= we).map((s) => s.info && s.info.stats).filter(Boolean);
  const srvMed = (k) => median(srv.map((s) => s[k]));
  return {
    fps: d('in', 'framesDecoded') != null ? +(d('in', 'framesDecoded') / dt).toFixed(1) : 0,
    frozenS: d('in', 'totalFreezesDuration') != null ? +d('in', 'totalFreezesDuration').toFixed(2) : null,
    freezes: d('in', 'freezeCount'),
    height: median(inWin.map((p) => p.in && p.in.frameHeight)) || 0,
    lagP50: pct(lags, 50), lagP95: pct(lags, 95),
    lagOver400S: +(lagSamples.filter((l) => l[1] > 400).length * 0.05).toFixed(2),
    lagMaxMs: lagSamples.length ? Math.max(...lagSamples.map((l) => l[1])) : null,
    framesCounted: frames.length,
    rxKbps: d('in', 'bytesReceived') != null ? Math.round(d('in', 'bytesReceived') * 8 / dt / 1000) : null,
    packetsLost: d('in', 'packetsLost'),
    nack: d('in', 'nackCount'), pli: d('in', 'pliCount'), fir: d('in', 'firCount'),
    keyFrames: d('in', 'keyFramesDecoded'),
    jitterBufferMs: d('in', 'jitterBufferEmittedCount') ? Math.round(1000 * d('in', 'jitterBufferDelay') / d('in', 'jitterBufferEmittedCount')) : null,
    sentFps: d('out', 'framesSent') != null ? +(d('out', 'framesSent') / dt).toFixed(1) : null,
    sentHeight: median(inWin.map((p) => p.out && p.out.frameHeight)),
    txKbps: d('out', 'bytesSent') != null ? Math.round(d('out', 'bytesSent') * 8 / dt / 1000) : null,
    qualityLimitation: mode_(inWin.map((p) => p.out && p.out.qualityLimitationReason)),
    qualityLimitationS: qld,
    availOutKbps: (() => { const v = median(inWin.map((p) => p.pair && p.pair.availableOutgoingBitrate)); return v == null ? null : Math.round(v / 1000); })(),
    rttMs: (() => { const v = median(inWin.map((p) => p.pair && p.pair.currentRoundTripTime)); return v == null ? null : Math.round(v * 1000); })(),
    pair: (b.pair || {}).local ? b.pair.local + ' -> ' + b.pair.remote : null,
    server: srv.length ? { fpsIn: r1(srvMed('VideoFPSIn')), fpsOut: r1(srvMed('VideoFPSOut')), targetKbps: srvMed('VideoTargetBitrate') != null ? Math.round(srvMed('VideoTargetBitrate') / 1000) : undefined,
      bweKbps: srvMed('BandwidthEstimate') != null ? Math.round(srvMed('BandwidthEstimate') / 1000) : undefined, heightOut: srvMed('VideoHeightOut') } : null,
    sent: raw.sent, received: raw.received, undecodable: raw.invalid,
  };
}

// A proxy on 127.0.0.1: its own blank page at /, everything else to the server.
function startProxy(target) {
  const t = new URL(target);
  const srv = http.createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/' || req.url.startsWith('/?'))) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><meta charset=utf-8><title>badlink</title><body></body>');
      return;
    }
    const up = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers: { ...req.headers, host: t.host }, timeout: 15000 }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('timeout', () => up.destroy(new Error('upstream timeout')));
    up.on('error', (e) => { if (!res.headersSent) res.writeHead(502); res.end(String(e)); });
    req.pipe(up);
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({ url: 'http://127.0.0.1:' + srv.address().port, close: () => srv.close() })));
}

async function run() {
  const profile = opt('profile');
  const server = opt('server');
  const outFile = opt('out', join(OUT, 'badlink-' + profile + '.json'));
  const seconds = +opt('seconds', 20), warmup = +opt('warmup', 8);
  const switchAt = opt('switch-at', '') === '' ? null : +opt('switch-at');
  const linkemuPid = +opt('linkemu-pid', 0);
  const hint = opt('hint', '');
  if (!profile || !server) throw new Error('run needs --profile and --server');
  const hard = setTimeout(() => { console.error('badlink: hard timeout in the client'); process.exit(3); }, (warmup + seconds + 60) * 1000);
  const proxy = await startProxy(server);
  const signal = (sig) => { if (linkemuPid) { try { process.kill(linkemuPid, sig); } catch (e) { console.error('badlink: signal linkemu:', e.message); } } };
  const browser = await launch({ extraArgs: ['--disable-features=WebRtcHideLocalIpsWithMdns'] });
  let raw, page;
  try {
    const ctx = await browser.newContext();
    page = await ctx.newPage();
    page.consoleLog = [];
    page.on('console', (m) => page.consoleLog.push(m.type() + ': ' + m.text()));
    page.on('pageerror', (e) => page.consoleLog.push('pageerror: ' + e.message));
    await page.exposeFunction('__blEvent', (name) => {
      if (name === 'window-start' || name === 'window-end') signal('SIGUSR2');
      if (name === 'switch') signal('SIGUSR1');
    });
    await page.goto(proxy.url + '/');
    raw = await page.evaluate(harness, { seconds, warmup, switchAt, hint });
  } catch (e) {
    raw = { error: String(e && e.stack || e), console: page ? page.consoleLog : [] };
  } finally {
    await browser.close().catch(() => {});
    proxy.close();
    clearTimeout(hard);
  }
  const out = { profile, seconds, warmup, switchAt, hint, raw };
  if (!raw.error) out.summary = summarize(raw, seconds);
  writeFileSync(outFile, JSON.stringify(out));
  if (raw.error) {
    console.error('badlink: ' + profile + ': ' + raw.error + (raw.log ? '\n  page: ' + raw.log.join('\n  page: ') : ''));
    process.exitCode = 1;
    return;
  }
  const s = out.summary;
  console.log(`badlink: ${profile}: ${s.fps} fps, frozen ${s.frozenS} s, lag p50 ${s.lagP50} p95 ${s.lagP95} ms, height ${s.height}, lag>400 ${s.lagOver400S} s; ` +
    `sent ${s.sentFps} fps ${s.sentHeight}p, rx ${s.rxKbps} kbit/s, rtt ${s.rttMs} ms, ${s.pair}`);
}

// ---- report -----------------------------------------------------------------------------

/** linkemu's counters over the measured window (between its two SIGUSR2 marks). */
function linkWindow(lk) {
  if (!lk) return null;
  const m = lk.marks || [];
  const sub = (x, y) => Object.fromEntries(Object.keys(x).map((k) => [k, k === 'max_queue' ? x[k] : x[k] - (y[k] || 0)]));
  const total = { down: lk.down, up: lk.up };
  if (m.length >= 2) return { window: { down: sub(m[1].down, m[0].down), up: sub(m[1].up, m[0].up) }, total, switches: lk.switches };
  return { total, switches: lk.switches };
}

function targets(profile, s) {
  const miss = [];
  if (s.fps < 25) miss.push(`fps ${s.fps} < 25`);
  if (s.frozenS == null || s.frozenS > 1) miss.push(`frozen ${s.frozenS} s > 1`);
  if (profile === '4to600') {
    if (s.lagOver400S > 3) miss.push(`lag > 400 ms for ${s.lagOver400S} s > 3`);
  } else if (s.lagP95 == null || s.lagP95 > 400) miss.push(`lag p95 ${s.lagP95} ms > 400`);
  const minH = { perfect: 480, '1mbit': 360, '1mbit-down': 360, '500kbit': 240 }[profile];
  if (minH && s.height < minH) miss.push(`height ${s.height} < ${minH}`);
  return miss;
}

/**
 * The regression floor CI holds every profile to (--floor): well below the targets,
 * which this machine's noise (2 cores, a browser and the emulator beside the server) does
 * not let a single run meet reliably, and far above what the server did before congestion
 * control (0.1 to 0.5 fps on the rate-limited links, 9.5 fps at 5% loss). The perfect link
 * keeps the full targets.
 */
function floor(profile, s) {
  if (profile === 'perfect') return targets(profile, s);
  const miss = [];
  if (s.fps < 12) miss.push(`fps ${s.fps} < 12`);
  if (s.frozenS == null || s.frozenS > 8) miss.push(`frozen ${s.frozenS} s > 8`);
  if (profile === '4to600') {
    if (s.lagOver400S > 15) miss.push(`lag > 400 ms for ${s.lagOver400S} s > 15`);
  } else if (s.lagP95 == null || s.lagP95 > 2000) miss.push(`lag p95 ${s.lagP95} ms > 2000`);
  return miss;
}

function report() {
  const profiles = opt('profiles', '').split(',').filter(Boolean);
  const rows = [], all = {};
  let failed = false;
  for (const p of profiles) {
    const f = join(OUT, 'badlink-' + p + '.json');
    if (!existsSync(f)) { all[p] = { error: 'no result (the run failed before measuring)' }; failed = true; rows.push({ p, err: all[p].error }); continue; }
    const r = JSON.parse(readFileSync(f, 'utf8'));
    const lf = join(OUT, 'badlink-' + p + '-linkemu.json');
    const lk = existsSync(lf) ? (() => { try { return JSON.parse(readFileSync(lf, 'utf8').trim().split('\n').pop()); } catch (e) { return null; } })() : null;
    const link = linkWindow(lk);
    if (r.raw.error) { all[p] = { error: r.raw.error, link, log: r.raw.log }; failed = true; rows.push({ p, err: r.raw.error }); continue; }
    const s = r.summary;
    const miss = flag('floor') ? floor(p, s) : targets(p, s);
    all[p] = { ...s, link, targetsMissed: miss, seconds: r.seconds, warmup: r.warmup, switchAt: r.switchAt };
    rows.push({ p, s, link, miss });
  }
  const f0 = (x) => (x == null ? '-' : String(x));
  console.log('\nThe server\'s video through each link (headless Chromium, 640x480@30 canvas, cmd/e2eserver -kind flip):\n');
  console.log('| profile | fps | frozen s | lag p95 ms | lag p50 ms | height | lag > 400 ms (s) | targets |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---|');
  for (const r of rows) {
    if (r.err) { console.log(`| ${r.p} | - | - | - | - | - | - | error: ${r.err.split('\n')[0].slice(0, 100)} |`); continue; }
    const s = r.s;
    console.log(`| ${r.p} | ${s.fps} | ${f0(s.frozenS)} | ${f0(s.lagP95)} | ${f0(s.lagP50)} | ${s.height} | ${s.lagOver400S} | ${r.miss.length ? 'missed: ' + r.miss.join('; ') : 'met'} |`);
  }
  console.log('\nDetails (measured window; nack/pli: sent by the browser; link drops: linkemu, down = toward the browser, loss/queue):\n');
  console.log('| profile | rx kbit/s | freezes | nack | pli | keyframes | jb ms | rtt ms | avail out kbit/s | browser sends | limitation | server (fps in/out, target, bwe kbit/s) | link down in/loss/queue | link up in/loss/queue |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|');
  for (const r of rows) {
    if (r.err) continue;
    const s = r.s, w = r.link && (r.link.window || r.link.total);
    const lq = (c) => (c ? `${c.in}/${c.dropped_loss}/${c.dropped_queue}` : '-');
    const sv = s.server ? `${f0(s.server.fpsIn)}/${f0(s.server.fpsOut)}, ${f0(s.server.targetKbps)}, ${f0(s.server.bweKbps)}` : '-';
    console.log(`| ${r.p} | ${f0(s.rxKbps)} | ${f0(s.freezes)} | ${f0(s.nack)} | ${f0(s.pli)} | ${f0(s.keyFrames)} | ${f0(s.jitterBufferMs)} | ${f0(s.rttMs)} | ${f0(s.availOutKbps)} | ` +
      `${f0(s.sentFps)} fps ${f0(s.sentHeight)}p ${f0(s.txKbps)} kbit/s | ${f0(s.qualityLimitation)} | ${sv} | ${lq(w && w.down)} | ${lq(w && w.up)} |`);
  }
  writeFileSync(join(OUT, 'badlink.json'), JSON.stringify({ when: new Date().toISOString(), profiles: all }, null, 2));
  console.log('\n(per-profile raw data: e2e/out/badlink-<profile>.json; summary: e2e/out/badlink.json)');
  const missed = rows.filter((r) => r.miss && r.miss.length);
  if ((flag('assert') || flag('floor')) && (failed || missed.length)) {
    console.error('badlink: targets missed: ' + rows.filter((r) => r.err || (r.miss && r.miss.length)).map((r) => r.p + (r.err ? ' (error)' : ' (' + r.miss.join('; ') + ')')).join(', '));
    process.exitCode = 1;
  } else if (failed) {
    process.exitCode = 1;
  }
}

if (mode === 'run') run().catch((e) => { console.error('badlink:', e); process.exitCode = 1; });
else if (mode === 'report') report();
else { console.error('usage: node badlink.mjs run --profile P --server URL ... | report --profiles a,b [--assert]'); process.exitCode = 2; }
