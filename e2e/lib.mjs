// Helpers shared by the browser suite and the latency harness: the test server, headless
// Chromium with fake devices, and measurements taken inside the page.
import { spawn } from 'node:child_process';
import { mkdirSync, createWriteStream } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const E2E = dirname(fileURLToPath(import.meta.url));
export const ROOT = dirname(E2E);
export const OUT = process.env.E2E_OUT || join(E2E, 'out');
mkdirSync(OUT, { recursive: true });

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts cmd/e2eserver (built by run.sh) and resolves with {base, pid, stop}. */
export async function startServer(kinds, { logName = 'server.log', bin = join(OUT, 'e2eserver') } = {}) {
  const log = createWriteStream(join(OUT, logName));
  const proc = spawn(bin, ['-kind', kinds, '-addr', '127.0.0.1:0'].concat(process.env.E2E_VERBOSE ? ['-v'] : []), { stdio: ['ignore', 'pipe', 'pipe'] });
  let exited = false;
  proc.on('exit', () => { exited = true; });
  const base = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('e2eserver did not start within 20 s; see ' + join(OUT, logName))), 20000);
    const onData = (d) => {
      log.write(d);
      buf += d;
      const m = buf.match(/url=(http:\/\/127\.0\.0\.1:\d+)\//);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    proc.stderr.on('data', onData);
    proc.stdout.on('data', (d) => log.write(d));
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error('e2eserver exited with ' + code + '; see ' + join(OUT, logName))); });
  });
  proc.stderr.removeAllListeners('data');
  proc.stderr.on('data', (d) => log.write(d));
  const stop = async () => {
    if (exited) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM'); // only the process this function started, by its PID
    const t = setTimeout(() => { if (!exited) proc.kill('SIGKILL'); }, 5000);
    await gone;
    clearTimeout(t);
    log.end();
  };
  return { base, pid: proc.pid, stop };
}

/**
 * Launches headless Chromium with fake devices. video: a .y4m/.mjpeg file for the camera
 * (else Chrome's own fake pattern); audio: a .wav for the microphone (else its beeps).
 * Playwright gives every launch a fresh temporary profile (its --user-data-dir).
 */
export async function launch({ video, audio, extraArgs = [] } = {}) {
  const args = [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream=fps=30',
    '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
  ];
  if (video) args.push('--use-file-for-fake-video-capture=' + video);
  if (audio) args.push('--use-file-for-fake-audio-capture=' + audio);
  return chromium.launch({
    executablePath: CHROMIUM, headless: true, args: args.concat(extraArgs),
    // Playwright mutes audio by default; the pages here measure what they play.
    ignoreDefaultArgs: ['--mute-audio'],
    timeout: 30000,
  });
}

export async function newPage(browser, url, { width = 1280, height = 860 } = {}) {
  const ctx = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 });
  const page = await ctx.newPage();
  page.consoleLog = [];
  page.on('console', (m) => { page.consoleLog.push(m.type() + ': ' + m.text()); });
  page.on('pageerror', (e) => { page.consoleLog.push('pageerror: ' + e.message); });
  await page.goto(url);
  return page;
}

export class AssertionError extends Error {}
export function check(cond, msg) { if (!cond) throw new AssertionError(msg); }

/** waitFor polls fn(arg) in the page until it returns a truthy value and returns that value. */
export async function waitFor(page, fn, arg, timeout = 15000, what = '') {
  try {
    const h = await page.waitForFunction(fn, arg, { timeout, polling: 100 });
    return await h.jsonValue();
  } catch (e) {
    const snap = await page.evaluate(() => {
      const a = window.__fastrtc;
      return a ? { state: a.state, error: a.error, endReason: a.endReason, toasts: a.toasts.map((t) => t.text), stats: a.stats, pause: a.pauseHistory.map((p) => p.state), outputs: a.outputs } : null;
    }).catch(() => null);
    throw new AssertionError('timed out after ' + timeout + ' ms waiting for ' + (what || fn.toString().slice(0, 120)) + '; page: ' + JSON.stringify(snap));
  }
}

/** Clicks Start on the built-in page and waits for the connection. */
export async function connect(page, timeout = 20000) {
  await page.click('[data-testid=start]');
  await waitFor(page, () => window.__fastrtc.state === 'connected', null, timeout, 'state connected');
}

/**
 * Reads the pixels of the page's video elements, scaled to w x h, inside the page: returns
 * {remote, local, localFlipped} (RGBA Buffers, or null without a frame) and w, h.
 */
export async function grab(page, { w = 160, h = 120 } = {}) {
  const r = await page.evaluate(({ w, h }) => {
    const c = document.createElement('canvas');
    c.width = w; c.height = h;
    const g = c.getContext('2d', { willReadFrequently: true });
    const b64 = (u8) => { let s = ''; for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000)); return btoa(s); };
    const read = (sel, flip) => {
      const v = document.querySelector(sel);
      if (!v || !v.videoWidth) return null;
      g.save();
      if (flip) { g.translate(0, h); g.scale(1, -1); }
      g.drawImage(v, 0, 0, w, h);
      g.restore();
      return b64(new Uint8Array(g.getImageData(0, 0, w, h).data.buffer));
    };
    return { remote: read('#remote-video'), local: read('#local-video'), localFlipped: read('#local-video', true) };
  }, { w, h });
  const dec = (s) => (s ? Buffer.from(s, 'base64') : null);
  return { remote: dec(r.remote), local: dec(r.local), localFlipped: dec(r.localFlipped), w, h };
}

/** Mean absolute RGB difference of two RGBA arrays over rows [y0, y1) (0..255). */
export function diff(a, b, w, y0 = 0, y1 = Infinity) {
  let s = 0, n = 0;
  const h = a.length / 4 / w;
  for (let y = y0; y < Math.min(y1, h); y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      s += Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]);
      n += 3;
    }
  }
  return s / n;
}

/** Mean RGB of an RGBA array over rows [y0, y1) and columns [x0, x1). */
export function meanRGB(a, w, y0, y1, x0 = 0, x1 = w) {
  const s = [0, 0, 0];
  let n = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = (y * w + x) * 4;
      s[0] += a[i]; s[1] += a[i + 1]; s[2] += a[i + 2]; n++;
    }
  }
  return s.map((v) => v / n);
}

/**
 * Measures an audio element's stream (or the page's remote stream) in WebAudio for ms
 * milliseconds: the dominant frequency (peak of the averaged spectrum, refined by parabolic
 * interpolation) and the RMS level in dBFS.
 */
export async function measureAudio(page, { source = 'remote', ms = 1500 } = {}) {
  return page.evaluate(async ({ source, ms }) => {
    const a = window.__fastrtc;
    const stream = source === 'remote' ? document.querySelector('#remote-audio').srcObject : a.localStream;
    if (!stream || !stream.getAudioTracks().length) return { error: 'no ' + source + ' audio track' };
    const ctx = new AudioContext();
    await ctx.resume();
    const src = ctx.createMediaStreamSource(new MediaStream(stream.getAudioTracks()));
    const an = ctx.createAnalyser();
    an.fftSize = 8192;
    an.smoothingTimeConstant = 0;
    src.connect(an);
    const spec = new Float32Array(an.frequencyBinCount);
    const acc = new Float64Array(an.frequencyBinCount);
    const td = new Float32Array(an.fftSize);
    let sumSq = 0, count = 0, frames = 0;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 200));
    while (performance.now() - t0 < ms) {
      an.getFloatFrequencyData(spec);
      for (let i = 0; i < spec.length; i++) acc[i] += Math.pow(10, spec[i] / 10);
      an.getFloatTimeDomainData(td);
      for (const v of td) { sumSq += v * v; count++; }
      frames++;
      await new Promise((r) => setTimeout(r, 100));
    }
    let k = 1;
    for (let i = 2; i < acc.length - 1; i++) if (acc[i] > acc[k]) k = i;
    const [l, c, r] = [acc[k - 1], acc[k], acc[k + 1]].map((v) => 10 * Math.log10(v + 1e-30));
    const delta = (l - r) / (2 * (l - 2 * c + r) || 1);
    const binHz = ctx.sampleRate / an.fftSize;
    const rms = Math.sqrt(sumSq / Math.max(1, count));
    src.disconnect();
    await ctx.close();
    return { freq: (k + delta) * binHz, binHz, dbfs: 20 * Math.log10(rms + 1e-12), frames, sampleRate: ctx.sampleRate };
  }, { source, ms });
}

/** Polls the server's /debug/stats until kind has no sessions and no codecs. */
export async function expectServerClean(base, kind, timeout = 8000) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < timeout) {
    last = await (await fetch(base + '/debug/stats')).json();
    const k = last[kind];
    if (k && k.sessions === 0 && k.codecs === 0) return Date.now() - t0;
    await sleep(200);
  }
  throw new AssertionError('server still has sessions or codecs for ' + kind + ' after the browser left: ' + JSON.stringify(last[kind]));
}

export async function serverStats(base) {
  return (await fetch(base + '/debug/stats')).json();
}

/** Screenshot of the page down to its footer, to OUT/name.png. */
export async function shot(page, name) {
  const bottom = await page.evaluate(() => { const f = document.querySelector('footer'); return f ? f.getBoundingClientRect().bottom : innerHeight; });
  const vp = page.viewportSize();
  const path = join(OUT, name + '.png');
  await page.screenshot({ path, clip: { x: 0, y: 0, width: vp.width, height: Math.min(vp.height, Math.ceil(bottom) + 8) } });
  return path;
}
