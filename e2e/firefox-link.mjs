// The Firefox scenarios through an emulated link (firefox.mjs: scenarios with a `link`; the
// link is scripts/netem.sh's, built by firefox.sh). The measurement is badlink.mjs's, in
// Firefox's terms:
//
// - The camera: the page's getUserMedia returns a 640x480 canvas, drawn and pushed 30 times a
//   second on a fixed schedule (canvas.captureStream(0) and the stream's requestFrame(), which
//   Firefox has on the stream, not on the track): badlink's moving, textured picture with a
//   frame counter as blocks on the top and bottom rows (12 bits of counter, 4 of check; the
//   flip keeps them). The time each frame was pushed is kept, on the page's clock.
// - The screen: Firefox has no MediaStreamTrackProcessor on the window, so the counter is read
//   from the page's own remote <video> in requestVideoFrameCallback (one call per frame
//   composited): the lag is from the canvas to the screen.
// - Freezes: Firefox's inbound-rtp freezeCount and totalFreezesDuration (as Chromium's), and
//   the same counted from the frames on screen as webrtc-stats defines them: a frame shown for
//   at least max(3 x, x + 150 ms), x the mean of the previous 30 frame durations, is a
//   freeze, and its whole duration counts as frozen.
// - getStats() every second (inbound frames decoded, height, NACK/PLI sent, loss; outbound);
//   the server's own figures of the session as the built-in page polls them (GET /stats every
//   2 s: its fps in/out, bandwidth estimate, encoder target and size, NACKs and key-frame
//   requests both ways).

/**
 * linkCamera runs in the page before it loads (evaluateOnNewDocument): a getUserMedia that
 * answers a video-only request with the counter canvas. State in window.__cam.
 */
export const linkCamera = (useTimer) => {
  const md = navigator.mediaDevices;
  if (!md) return;
  const orig = md.getUserMedia.bind(md);
  const cam = window.__cam = { gum: [], sentAt: new Map(), sent: 0 };
  md.getUserMedia = async (c) => {
    cam.gum.push(JSON.parse(JSON.stringify(c)));
    if (!c || !c.video || c.audio) return orig(c);
    const W = 640, H = 480, BITS = 16, CW = W / BITS, CH = 48, TH = H - 2 * CH;
    // A texture twice the width (seamless when it scrolls): a colour gradient, blobs, fine
    // noise (badlink.mjs's picture: enough detail that the encoder has work at 640x480).
    let seed = 12345;
    const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
    const tile = document.createElement('canvas');
    tile.width = W; tile.height = TH;
    const tg = tile.getContext('2d', { willReadFrequently: true });
    const grad = tg.createLinearGradient(0, 0, W, TH);
    ['#1e3a5f', '#5f8a3a', '#a05a2c', '#3a2c6a', '#1e3a5f'].forEach((col, i) => grad.addColorStop(i / 4, col));
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
    const tex = document.createElement('canvas');
    tex.width = 2 * W; tex.height = TH;
    const xg = tex.getContext('2d');
    xg.drawImage(tile, 0, 0); xg.drawImage(tile, W, 0);

    const canvas = document.createElement('canvas');
    canvas.width = W; canvas.height = H;
    const g = canvas.getContext('2d');
    const stream = canvas.captureStream(0);
    const code = (n) => ((n & 0xfff) << 4) | ((n ^ (n >> 4) ^ (n >> 8)) & 0xf);
    const draw = (n) => {
      g.drawImage(tex, (n * 4) % W, 0, W, TH, 0, CH, W, TH); // scrolls 120 px/s
      const x = (n * 6) % (W - 140), y = CH + 20 + Math.abs(((n * 3) % (2 * (TH - 140))) - (TH - 140));
      g.fillStyle = '#e0702a'; g.fillRect(x, y, 140, 100);
      g.fillStyle = '#fff'; g.font = 'bold 44px sans-serif'; g.fillText(String(n), W - 170 - x / 3, CH + 60);
      const k = code(n);
      for (let b = 0; b < BITS; b++) {
        g.fillStyle = (k >> (BITS - 1 - b)) & 1 ? '#fff' : '#000';
        g.fillRect(b * CW, 0, CW, CH);
        g.fillRect(b * CW, H - CH, CW, CH);
      }
    };
    // 30 fps from the start (the camera does not wait for the network), on every other
    // animation frame: Firefox takes a requested canvas frame at its next refresh (60 Hz) and
    // stamps it with that time, so frames pushed on a timer of their own come 16.7, 33.3 or
    // 50 ms apart, and the server, which holds its frame rate by these stamps, skips the
    // ones that follow the previous at 16.7 ms (measured on a perfect link: 7 of 30 a second,
    // 22 fps decoded). A camera's frames are evenly stamped; so are these. A late refresh
    // makes a longer interval, not a short one (E2E_FF_CAMERA_TIMER=1: the timer instead).
    const t0 = performance.now();
    let n = 0, ticks = 0;
    cam.code = code;
    cam.started = t0;
    const push = () => {
      n = (n + 1) & 0xfff;
      draw(n);
      stream.requestFrame();
      cam.sentAt.set(n, performance.now());
      cam.sent++;
    };
    const onAnimationFrame = () => {
      if (cam.stopped) return;
      if (ticks++ % 2 === 0) push();
      requestAnimationFrame(onAnimationFrame);
    };
    const onTimer = () => {
      if (cam.stopped) return;
      push();
      setTimeout(onTimer, Math.max(0, t0 + cam.sent * (1000 / 30) - performance.now()));
    };
    cam.ticks = () => ticks;
    draw(0);
    if (useTimer) onTimer(); else requestAnimationFrame(onAnimationFrame);
    return stream;
  };
};

/**
 * linkMeter starts the measurement in the page once it is connected (page.evaluate; returns
 * at once): the counter read from each frame of #remote-video as it is composited, the lag
 * sampled every 50 ms, getStats() every second, the page's server stats as they come.
 */
export const linkMeter = () => {
  const cam = window.__cam, api = window.__fastrtc;
  const W = 640, H = 480, BITS = 16, CW = W / BITS, CH = 48;
  const now = () => performance.now();
  const m = window.__meter = { frames: [], lag: [], polls: [], server: [], events: { start: now() }, received: 0, invalid: 0, repeated: 0 };
  const video = document.querySelector('#remote-video');
  const oc = document.createElement('canvas');
  oc.width = W; oc.height = CH;
  const og = oc.getContext('2d', { willReadFrequently: true });
  let seen = -1, lastSent = null;
  const onFrame = (_, meta) => {
    if (m.stopped) return;
    const t = now();
    const vw = video.videoWidth, vh = video.videoHeight;
    if (vw && vh) {
      og.drawImage(video, 0, 0, vw, vh * CH / H, 0, 0, W, CH); // the top rows, at any size
      const px = og.getImageData(0, 0, W, CH).data;
      let c = 0;
      for (let b = 0; b < BITS; b++) {
        let s = 0, k = 0;
        for (let yy = 12; yy < CH - 12; yy += 4) for (let xx = b * CW + 10; xx < (b + 1) * CW - 10; xx += 4) { s += px[(yy * W + xx) * 4 + 1]; k++; }
        c = (c << 1) | (s / k > 128 ? 1 : 0);
      }
      m.received++;
      const n = c >> 4;
      if (cam.code(n) !== c || !cam.sentAt.has(n)) m.invalid++;
      else if (n <= seen) m.repeated++;
      else {
        seen = n;
        lastSent = cam.sentAt.get(n);
        m.frames.push([Math.round(t), n, Math.round(t - lastSent), vw, vh, meta.presentedFrames]);
      }
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  m.lagTimer = setInterval(() => { if (lastSent != null) m.lag.push([Math.round(now()), Math.round(now() - lastSent)]); }, 50);

  const poll = async () => {
    const pc = api.pc;
    if (!pc) return null;
    const st = await pc.getStats();
    const p = { t: Math.round(now()) };
    st.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        p.in = { framesDecoded: r.framesDecoded, framesReceived: r.framesReceived, framesDropped: r.framesDropped, frameHeight: r.frameHeight,
          frameWidth: r.frameWidth, fps: r.framesPerSecond, nackCount: r.nackCount, pliCount: r.pliCount, firCount: r.firCount,
          packetsLost: r.packetsLost, packetsReceived: r.packetsReceived, bytesReceived: r.bytesReceived, jitterBufferDelay: r.jitterBufferDelay,
          jitterBufferEmittedCount: r.jitterBufferEmittedCount, keyFramesDecoded: r.keyFramesDecoded, freezeCount: r.freezeCount,
          totalFreezesDuration: r.totalFreezesDuration };
      }
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        p.out = { framesEncoded: r.framesEncoded, framesSent: r.framesSent, frameHeight: r.frameHeight, bytesSent: r.bytesSent,
          nackCount: r.nackCount, pliCount: r.pliCount, retransmittedBytesSent: r.retransmittedBytesSent, targetBitrate: r.targetBitrate };
      }
      if (r.type === 'remote-inbound-rtp' && r.kind === 'video') p.rtt = r.roundTripTime;
    });
    m.polls.push(p);
    return p;
  };
  m.poll = poll;
  m.pollTimer = setInterval(poll, 1000);
  let lastSrv = null;
  m.srvTimer = setInterval(() => {
    const s = api.serverStats;
    if (s && s !== lastSrv) { lastSrv = s; m.server.push({ t: Math.round(now()), stats: s.stats }); }
  }, 250);
  m.mark = async (name) => { m.events[name] = now(); m[name + 'Poll'] = await poll(); };
  m.finish = () => {
    m.stopped = true;
    clearInterval(m.lagTimer); clearInterval(m.pollTimer); clearInterval(m.srvTimer);
    const { lagTimer, pollTimer, srvTimer, poll: _p, mark, finish, ...raw } = m;
    // As JSON: WebDriver BiDi's serialization gives an object met twice (a poll that is also
    // windowStartPoll) only once.
    return JSON.stringify({ ...raw, sent: cam.sent, camera: [...cam.sentAt.values()].map(Math.round) });
  };
};

const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] : null; };
const r1 = (x) => (x == null ? x : +x.toFixed(1));
const median = (a) => pct(a.filter((x) => x != null && !Number.isNaN(x)), 50);

/**
 * Freezes among frames shown at times ts (ms, ascending), as webrtc-stats defines them: a
 * frame duration d >= max(3 x, x + 150), x the mean of the previous (up to) 30 durations.
 */
export function freezes(ts) {
  const durs = [];
  let count = 0, total = 0, longest = 0;
  for (let i = 1; i < ts.length; i++) {
    const d = ts[i] - ts[i - 1];
    const last = durs.slice(-30);
    if (last.length) {
      const avg = last.reduce((a, b) => a + b, 0) / last.length;
      if (d >= Math.max(3 * avg, avg + 150)) { count++; total += d; longest = Math.max(longest, d); }
    }
    durs.push(d);
  }
  return { count, totalMs: total, longestMs: longest };
}

/** The figures of the measured window (between the windowStart and windowEnd marks). */
export function summarizeLink(raw) {
  const ws = raw.events.windowStart, we = raw.events.windowEnd;
  const a = raw.windowStartPoll || {}, b = raw.windowEndPoll || {};
  const dt = (b.t - a.t) / 1000 || (we - ws) / 1000;
  const d = (side, k) => (b[side] && a[side] && b[side][k] != null ? b[side][k] - (a[side][k] || 0) : null);
  const inWin = raw.polls.filter((p) => p.t >= ws - 1 && p.t <= we + 1);
  // Frames on screen in the window, with the last one before it (the first duration).
  const shown = raw.frames.filter((f) => f[0] <= we);
  const i0 = Math.max(0, shown.findIndex((f) => f[0] >= ws) - 1);
  const win = shown.slice(i0).filter((f) => f[0] >= ws);
  const ts = shown.slice(i0).map((f) => f[0]);
  // The first duration of the window runs from the last frame before it; the wait after the
  // last frame of the window counts too (a freeze at the end is a freeze).
  if (ts.length && we - ts[ts.length - 1] > 0) ts.push(we);
  const fr = freezes(ts);
  const lags = win.map((f) => f[2]);
  const lagSamples = raw.lag.filter((l) => l[0] >= ws && l[0] <= we);
  const srv = raw.server.filter((s) => s.t >= ws && s.t <= we + 2500).map((s) => s.stats).filter(Boolean);
  const srvMed = (k) => median(srv.map((s) => s[k]));
  const srvD = (k) => (srv.length >= 2 && srv[0][k] != null ? srv[srv.length - 1][k] - srv[0][k] : null);
  return {
    fps: d('in', 'framesDecoded') != null ? r1(d('in', 'framesDecoded') / dt) : 0,
    shownFps: r1(win.length / ((we - ws) / 1000)),
    cameraFps: raw.camera ? r1(raw.camera.filter((t) => t >= ws && t < we).length / ((we - ws) / 1000)) : null,
    // Firefox's own freeze figures where it has them (inbound-rtp freezeCount and
    // totalFreezesDuration, as Chromium's), else those counted from the screen.
    frozenS: d('in', 'totalFreezesDuration') != null ? +d('in', 'totalFreezesDuration').toFixed(2) : +(fr.totalMs / 1000).toFixed(2),
    freezes: d('in', 'freezeCount') != null ? d('in', 'freezeCount') : fr.count,
    screenFrozenS: +(fr.totalMs / 1000).toFixed(2), screenFreezes: fr.count, longestFreezeMs: fr.longestMs,
    height: median(inWin.map((p) => p.in && p.in.frameHeight)) || 0,
    lagP50: pct(lags, 50), lagP95: pct(lags, 95),
    lagOver400S: +(lagSamples.filter((l) => l[1] > 400).length * 0.05).toFixed(2),
    lagMaxMs: lagSamples.length ? Math.max(...lagSamples.map((l) => l[1])) : null,
    rxKbps: d('in', 'bytesReceived') != null ? Math.round(d('in', 'bytesReceived') * 8 / dt / 1000) : null,
    packetsLost: d('in', 'packetsLost'), packetsReceived: d('in', 'packetsReceived'),
    nack: d('in', 'nackCount'), pli: d('in', 'pliCount'), fir: d('in', 'firCount'),
    keyFrames: d('in', 'keyFramesDecoded'),
    jitterBufferMs: d('in', 'jitterBufferEmittedCount') ? Math.round(1000 * d('in', 'jitterBufferDelay') / d('in', 'jitterBufferEmittedCount')) : null,
    sentFps: d('out', 'framesSent') != null ? r1(d('out', 'framesSent') / dt) : d('out', 'framesEncoded') != null ? r1(d('out', 'framesEncoded') / dt) : null,
    sentHeight: median(inWin.map((p) => p.out && p.out.frameHeight)),
    txKbps: d('out', 'bytesSent') != null ? Math.round(d('out', 'bytesSent') * 8 / dt / 1000) : null,
    txNack: d('out', 'nackCount'), txPli: d('out', 'pliCount'),
    rttMs: (() => { const v = median(inWin.map((p) => p.rtt)); return v == null ? null : Math.round(v * 1000); })(),
    server: srv.length ? {
      fpsIn: r1(srvMed('VideoFPSIn')), fpsOut: r1(srvMed('VideoFPSOut')),
      targetKbps: srvMed('VideoTargetBitrate') != null ? Math.round(srvMed('VideoTargetBitrate') / 1000) : null,
      bweKbps: srvMed('BandwidthEstimate') != null ? Math.round(srvMed('BandwidthEstimate') / 1000) : null,
      heightOut: srvMed('VideoHeightOut'), fpsTarget: srvMed('VideoFPSTarget'),
      nacksSent: srvD('NacksSent'), keyFramesRequested: srvD('KeyFramesRequested'), // its requests to the browser
      keyFrameRequests: srvD('KeyFrameRequests'), keyFramesOut: srvD('KeyFramesOut'), // the browser's to it
      framesDropped: srvD('VideoFramesDropped'), rttMs: srvMed('RTT') != null ? Math.round(srvMed('RTT') / 1e6) : null,
    } : null,
    sent: raw.sent, received: raw.received, undecodable: raw.invalid, repeated: raw.repeated, framesCounted: win.length,
  };
}
