// Glass-to-glass latency, measured the way a user feels it: a page draws a frame counter as
// black/white blocks on a canvas (640x480 at 30 fps, canvas.captureStream(0) + requestFrame,
// contentHint "detail"), sends it over WebRTC, reads the counter back from the returned
// track (MediaStreamTrackProcessor -> OffscreenCanvas -> getImageData) and takes the delay on
// the page's one clock. Paths, all on FastRTC's offer protocol, in alternating rounds:
//
//   forward   plain pion sending the browser's VP8 RTP straight back (the floor)
//   identity  fastrtc: decode -> handler returning the frame -> encode
//   flip      fastrtc: decode -> FlipVertical -> encode (the code is drawn top and bottom)
//
//   node latency.mjs [--seconds 10] [--rounds 2] [--paths forward,identity,flip]
// (latency.sh builds the server and runs this inside a loopback-only network namespace.)
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OUT, startServer, launch, sleep } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, def) => (argv.includes('--' + name) ? argv[argv.indexOf('--' + name) + 1] : def);
const SECONDS = +opt('seconds', 10);
const ROUNDS = +opt('rounds', 2);
const PATHS = opt('paths', 'forward,identity,flip').split(',');
const WARMUP_S = 3;

// Runs in the page: one session through prefix, returns per-frame delays (ms).
async function harness({ prefix, seconds, warmup }) {
  const W = 640, H = 480, BITS = 16, CW = W / BITS, CH = 48;
  const canvas = document.createElement('canvas');
  canvas.width = W; canvas.height = H;
  const g = canvas.getContext('2d');
  const stream = canvas.captureStream(0);
  const track = stream.getVideoTracks()[0];
  track.contentHint = 'detail';
  const draw = (n) => {
    g.fillStyle = '#303640'; g.fillRect(0, 0, W, H);
    const x = (n * 6) % (W - 120);  // some motion, like a real picture
    g.fillStyle = '#e0702a'; g.fillRect(x, 140, 120, 120);
    g.fillStyle = '#3b82f6'; g.fillRect(W - 120 - x, 280, 120, 80);
    g.fillStyle = '#fff'; g.font = '48px sans-serif'; g.fillText(String(n), 24, 120);
    for (let b = 0; b < BITS; b++) {  // the code, top and bottom (a vertical flip keeps it)
      g.fillStyle = (n >> (BITS - 1 - b)) & 1 ? '#fff' : '#000';
      g.fillRect(b * CW, 0, CW, CH);
      g.fillRect(b * CW, H - CH, CW, CH);
    }
  };
  const pc = new RTCPeerConnection();
  pc.addTransceiver(track, { direction: 'sendrecv', streams: [stream] });
  pc.createDataChannel('text');
  const sent = new Map();
  const res = { delays: [], sent: 0, received: 0, invalid: 0, duplicates: 0, width: 0, height: 0 };
  let seen = -1, startAt = 0, stopped = false;
  const got = new Promise((resolve) => {
    pc.ontrack = async (e) => {
      const reader = new MediaStreamTrackProcessor({ track: e.track }).readable.getReader();
      const oc = new OffscreenCanvas(W, H);
      const og = oc.getContext('2d', { willReadFrequently: true });
      while (!stopped) {
        const { value: frame, done } = await reader.read();
        if (done) break;
        const t = performance.now();
        res.width = frame.displayWidth; res.height = frame.displayHeight;
        og.drawImage(frame, 0, 0, W, H);
        frame.close();
        const px = og.getImageData(0, 0, W, CH).data;
        let n = 0;
        for (let b = 0; b < BITS; b++) {
          let s = 0, k = 0;
          for (let y = 12; y < CH - 12; y += 4) for (let x = b * CW + 10; x < (b + 1) * CW - 10; x += 4) { s += px[(y * W + x) * 4 + 1]; k++; }
          n = (n << 1) | (s / k > 128 ? 1 : 0);
        }
        res.received++;
        if (!sent.has(n)) { res.invalid++; continue; }
        if (n <= seen) { res.duplicates++; continue; }
        seen = n;
        if (sent.get(n) >= startAt) res.delays.push(t - sent.get(n));
      }
      resolve();
    };
  });
  let n = 0;
  draw(n);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); else { pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); setTimeout(r, 3000); } });
  const ans = await (await fetch(prefix + '/webrtc/offer', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: 'offer', webrtc_id: 'lat' + Math.random().toString(36).slice(2) }) })).json();
  if (!ans.sdp) throw new Error('offer refused: ' + JSON.stringify(ans));
  await pc.setRemoteDescription(ans);
  const t0 = performance.now();
  startAt = t0 + warmup * 1000;
  // 30 fps on a fixed schedule (no drift).
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      if (now - t0 > (warmup + seconds) * 1000) return resolve();
      n = (n + 1) & 0xffff;
      draw(n);
      track.requestFrame();
      sent.set(n, performance.now());
      res.sent++;
      const next = t0 + (n + 1) * (1000 / 30) - performance.now();
      setTimeout(tick, Math.max(0, next));
    };
    tick();
  });
  await new Promise((r) => setTimeout(r, 500)); // let the last frames arrive
  stopped = true;
  const st = await pc.getStats();
  st.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') { res.jitterBufferMs = r.jitterBufferEmittedCount ? 1000 * r.jitterBufferDelay / r.jitterBufferEmittedCount : null; res.framesDropped = r.framesDropped; res.decodeMs = r.framesDecoded ? 1000 * r.totalDecodeTime / r.framesDecoded : null; }
    if (r.type === 'outbound-rtp' && r.kind === 'video') { res.encodeMs = r.framesEncoded ? 1000 * r.totalEncodeTime / r.framesEncoded : null; res.sentRes = r.frameWidth + 'x' + r.frameHeight; res.limitation = r.qualityLimitationReason; }
  });
  pc.close();
  void got;
  return res;
}

const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] : NaN; };
const f1 = (x) => (x == null || Number.isNaN(x) ? '   -' : x.toFixed(1).padStart(5));

async function main() {
  const server = await startServer(PATHS.join(','), { logName: 'latency-server.log' });
  console.log(`latency: server ${server.base}; ${ROUNDS} round(s) x ${PATHS.join(', ')}; ${WARMUP_S} s warm-up + ${SECONDS} s measured each; 640x480 @ 30 fps`);
  const browser = await launch();
  const all = Object.fromEntries(PATHS.map((p) => [p, { delays: [], runs: [] }]));
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of PATHS) {
        const ctx = await browser.newContext();
        const page = await ctx.newPage();
        await page.goto(server.base + '/blank');
        const res = await page.evaluate(harness, { prefix: '/' + p, seconds: SECONDS, warmup: WARMUP_S });
        await ctx.close();
        all[p].delays.push(...res.delays);
        all[p].runs.push(res);
        console.log(`  round ${r + 1} ${p.padEnd(8)} p50 ${f1(pct(res.delays, 50))} ms  p95 ${f1(pct(res.delays, 95))} ms  (${res.delays.length} frames; sent ${res.sent}, received ${res.received}, undecodable ${res.invalid}, repeated ${res.duplicates}; ` +
          `returned ${res.width}x${res.height}, sent ${res.sentRes}, encode ${f1(res.encodeMs)} ms, decode ${f1(res.decodeMs)} ms, jitter buffer ${f1(res.jitterBufferMs)} ms, limitation ${res.limitation})`);
        await sleep(500);
      }
    }
  } finally {
    await browser.close().catch(() => {});
    await server.stop();
  }
  const label = { forward: 'forward (pion RTP, floor)', identity: 'fastrtc identity', flip: 'fastrtc flip' };
  console.log('\nglass-to-glass delay, 640x480 @ 30 fps, headless Chromium, loopback:');
  console.log('  path                        frames    p50 ms   p95 ms   mean ms');
  const summary = {};
  for (const p of PATHS) {
    const d = all[p].delays;
    summary[p] = { frames: d.length, p50: pct(d, 50), p95: pct(d, 95), mean: d.reduce((a, b) => a + b, 0) / d.length };
    console.log(`  ${(label[p] || p).padEnd(26)} ${String(d.length).padStart(7)}   ${f1(summary[p].p50)}    ${f1(summary[p].p95)}    ${f1(summary[p].mean)}`);
  }
  if (summary.forward) {
    for (const p of PATHS.filter((x) => x !== 'forward')) {
      console.log(`  ${p} over the floor: p50 +${(summary[p].p50 - summary.forward.p50).toFixed(1)} ms, p95 +${(summary[p].p95 - summary.forward.p95).toFixed(1)} ms`);
    }
  }
  writeFileSync(join(OUT, 'latency.json'), JSON.stringify({ summary, runs: Object.fromEntries(PATHS.map((p) => [p, all[p].runs.map(({ delays, ...rest }) => rest)])) }, null, 2));
  console.log('  (details: e2e/out/latency.json)');
  const bad = PATHS.filter((p) => !summary[p].frames);
  if (bad.length) { console.error('latency: no frames measured for ' + bad.join(', ')); process.exitCode = 1; }
}

main().catch((e) => { console.error('latency:', e); process.exitCode = 1; });
