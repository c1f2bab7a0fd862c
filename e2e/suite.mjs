// The browser suite: every scenario drives the built-in page of one cmd/e2eserver stream in
// headless Chromium with fake camera/microphone files, and asserts on the media itself.
//
//   node suite.mjs [--only name,name] [--keep-going]      (run.sh sets up media and the namespace)
import { copyFileSync, existsSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  OUT, ROOT, sleep, startServer, launch, newPage, check, waitFor, connect, grab, diff, meanRGB,
  measureAudio, expectServerClean, serverStats, shot,
} from './lib.mjs';

const CAMERA = join(OUT, 'camera.y4m');
const TONE = join(OUT, 'tone440.wav');
const SPEECH = join(ROOT, 'testdata/audio/two_utterances48k.wav');
const QUESTION = join(OUT, 'talk_question.wav'); // "what is the weather today"
const WAKE = join(OUT, 'talk_wake_klatt.wav'); // "hello computer what is the weather today"

const argv = process.argv.slice(2);
const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1].split(',') : null;

const scenarios = [];
/** scenario(name, {kind, video, audio, timeout}, async (t) => {...}) */
function scenario(name, opts, fn) { scenarios.push({ name, opts, fn }); }

let base = '';
const log = (...a) => console.log('   ', ...a);

// ---------------------------------------------------------------------------------------
scenario('flip', { kind: 'flip', video: CAMERA }, async ({ open }) => {
  const page = await open();
  check(await page.textContent('[data-testid=title]') === 'Flip', 'title from WithTitle');
  check((await page.textContent('[data-testid=subtitle]')).includes('upside down'), 'subtitle from WithTitle');
  check(await page.isVisible('[data-testid=input-conf_threshold]'), 'slider rendered for the declared input');
  await connect(page);
  log('timing (ms since Start):', JSON.stringify(await page.evaluate(() => window.__fastrtc.timing)));
  await waitFor(page, () => { const v = document.querySelector('#remote-video'); return v.videoWidth > 0 && v.currentTime > 0.5; }, null, 10000, 'remote video playing');
  // Pixels: the received frame equals the source with top and bottom swapped.
  log('remote video playing');
  const samples = [];
  for (let i = 0; i < 5; i++) {
    const g = await grab(page);
    check(g.remote && g.local, 'both videos have frames');
    samples.push({ flipped: diff(g.remote, g.localFlipped, g.w), straight: diff(g.remote, g.local, g.w) });
    await sleep(200);
  }
  const med = (k) => samples.map((s) => s[k]).sort((a, b) => a - b)[2];
  const dFlip = med('flipped'), dStraight = med('straight');
  log(`pixels: mean |remote - flipped source| = ${dFlip.toFixed(1)}, |remote - source| = ${dStraight.toFixed(1)} (0..255)`);
  check(dFlip < 14, `received frame should match the flipped source (mean diff ${dFlip.toFixed(1)} >= 14)`);
  check(dStraight > 3 * dFlip + 20, `received frame should differ from the unflipped source (${dStraight.toFixed(1)} vs ${dFlip.toFixed(1)})`);
  // Frame rate: getStats framesPerSecond and decoded frames over 3 s.
  await sleep(1500);
  const f0 = await page.evaluate(() => ({ frames: window.__fastrtc.stats.rx.video.frames, t: performance.now() }));
  await sleep(3000);
  const f1 = await page.evaluate(() => ({ frames: window.__fastrtc.stats.rx.video.frames, t: performance.now(), s: window.__fastrtc.stats }));
  const counted = (f1.frames - f0.frames) / ((f1.t - f0.t) / 1000);
  const fps = f1.s.rx.video.fps;
  log(`received video: ${fps} fps (getStats), ${counted.toFixed(1)} fps counted, ${f1.s.rx.video.width}x${f1.s.rx.video.height}, RTT ${f1.s.rttMs} ms`);
  check(fps >= 25, `getStats framesPerSecond ${fps} < 25`);
  check(counted >= 25, `decoded frame rate ${counted.toFixed(1)} < 25`);
  check(f1.s.rttMs != null, 'round-trip time shown');
  check((await page.textContent('[data-testid=stat-rx-fps]')).includes('fps'), 'fps shown on the page');
  await shot(page, 'flip');
  // The README's screenshot: written when missing, or on request (E2E_UPDATE_SCREENSHOT=1).
  const doc = join(ROOT, 'docs', 'screenshot.png');
  if (!existsSync(doc) || process.env.E2E_UPDATE_SCREENSHOT === '1') {
    mkdirSync(dirname(doc), { recursive: true });
    copyFileSync(join(OUT, 'flip.png'), doc);
    log('screenshot: e2e/out/flip.png, copied to docs/screenshot.png');
  } else {
    log('screenshot: e2e/out/flip.png (E2E_UPDATE_SCREENSHOT=1 also updates docs/screenshot.png)');
  }
});

// ---------------------------------------------------------------------------------------
scenario('inputs-outputs', { kind: 'inputs', video: CAMERA }, async ({ open }) => {
  const page = await open();
  for (const n of ['fill', 'color', 'enabled', 'label', 'every']) check(await page.isVisible(`[data-testid=input-${n}]`), `control for ${n}`);
  check(await page.getAttribute('[data-testid=input-fill]', 'type') === 'range', 'slider is a range input');
  check(await page.getAttribute('[data-testid=input-enabled]', 'type') === 'checkbox', 'checkbox');
  check(await page.evaluate(() => document.querySelector('[data-testid=input-color]').tagName) === 'SELECT', 'dropdown');
  check(await page.getAttribute('[data-testid=input-every]', 'type') === 'number', 'number');
  // A value set before connecting reaches the handler when the server asks (send_input).
  await page.locator('[data-testid=input-fill]').fill('0.25');
  await connect(page);
  await waitFor(page, () => window.__fastrtc.messages.some((m) => m.type === 'send_input'), null, 5000, 'send_input message');
  await waitFor(page, () => window.__fastrtc.outputs.rows === 120, null, 5000, 'rows output 120 (0.25 x 480) from the pre-set slider');
  const top = async () => { const g = await grab(page, { w: 80, h: 60 }); return { g, top: meanRGB(g.remote, 80, 2, 20), bottomDiff: diff(g.remote, g.local, 80, 40, 60) }; };
  let s = await top();
  const q = meanRGB(s.g.remote, 80, 1, 13), below = diff(s.g.remote, s.g.local, 80, 17, 60);
  log(`fill 0.25 (set before Start): top quarter rgb ${q.map(Math.round)}, rest vs source ${below.toFixed(1)}`);
  check(Math.min(...q) > 200, 'top quarter painted white');
  check(below < 20, 'the rest is the camera');
  // Move the slider: the next frames are painted white on the top half.
  await page.locator('[data-testid=input-fill]').fill('0.5');
  await waitFor(page, () => window.__fastrtc.outputs.rows === 240, null, 5000, 'rows output 240 (0.5 x 480)');
  await waitFor(page, () => {
    const v = document.querySelector('#remote-video'), c = document.createElement('canvas');
    c.width = 80; c.height = 60; const g = c.getContext('2d'); g.drawImage(v, 0, 0, 80, 60);
    const d = g.getImageData(0, 2, 80, 18).data; let m = 255; for (let i = 0; i < d.length; i += 4) m = Math.min(m, d[i], d[i + 1], d[i + 2]);
    return m > 200;
  }, null, 5000, 'top band painted white');
  s = await top();
  const rows = await page.evaluate(() => window.__fastrtc.outputs.rows);
  const h = await page.evaluate(() => document.querySelector('#local-video').videoHeight);
  log(`fill 0.5: top band rgb ${s.top.map(Math.round)}, rows output ${rows} (frame height ${h}), bottom diff vs source ${s.bottomDiff.toFixed(1)}`);
  check(s.bottomDiff < 20, 'bottom half still the camera');
  check(!h || Math.abs(rows - h / 2) <= 2, `rows output ${rows} should be half the frame height ${h}`);
  check((await page.textContent('[data-testid=output-rows]')).trim() === String(rows), 'rows output shown on the page');
  // Dropdown: black paint.
  await page.selectOption('[data-testid=input-color]', 'black');
  await waitFor(page, () => {
    const v = document.querySelector('#remote-video'), c = document.createElement('canvas');
    c.width = 80; c.height = 60; const g = c.getContext('2d'); g.drawImage(v, 0, 0, 80, 60);
    const d = g.getImageData(0, 2, 80, 18).data; let m = 0; for (let i = 0; i < d.length; i += 4) m = Math.max(m, d[i], d[i + 1], d[i + 2]);
    return m < 50;
  }, null, 5000, 'top band painted black');
  // Text input: echoed back as an output and shown on the page.
  await page.fill('[data-testid=input-label]', 'hello e2e');
  await page.press('[data-testid=input-label]', 'Enter');
  await waitFor(page, () => document.querySelector('[data-testid=output-label]').textContent === 'hello e2e', null, 5000, 'text echoed in outputs');
  // Checkbox off: the handler stops painting.
  await page.uncheck('[data-testid=input-enabled]');
  await waitFor(page, () => window.__fastrtc.outputs.rows === 0, null, 5000, 'rows output back to 0');
  await sleep(300);
  s = await top();
  const g = s.g;
  const topDiff = diff(g.remote, g.local, 80, 2, 20);
  log(`checkbox off: top band diff vs source ${topDiff.toFixed(1)}`);
  check(topDiff < 25, 'top band back to the camera picture');
  await shot(page, 'inputs');
  // An invalid value is refused with the field named (number input out of range).
  await page.fill('[data-testid=input-every]', '500');
  await page.press('[data-testid=input-every]', 'Enter');
  await waitFor(page, () => document.querySelector('[data-testid=input-every-error]').textContent.includes('outside'), null, 5000, 'range error shown by the number input');
});

// ---------------------------------------------------------------------------------------
scenario('audio-echo', { kind: 'echo', audio: TONE }, async ({ open }) => {
  const page = await open();
  await connect(page);
  const settings = await page.evaluate(() => window.__fastrtc.localStream.getAudioTracks()[0].getSettings());
  check(settings.echoCancellation === false && settings.noiseSuppression === false && settings.autoGainControl === false,
    'microphone opened with echo cancellation, noise suppression and AGC off: ' + JSON.stringify(settings));
  await waitFor(page, () => window.__fastrtc.stats.rx && window.__fastrtc.stats.rx.audio && window.__fastrtc.stats.rx.audio.samples > 24000, null, 10000, 'remote audio samples');
  const local = await measureAudio(page, { source: 'local', ms: 1200 });
  const remote = await measureAudio(page, { source: 'remote', ms: 2000 });
  log(`mic: ${local.freq.toFixed(1)} Hz at ${local.dbfs.toFixed(1)} dBFS; echoed: ${remote.freq.toFixed(1)} Hz at ${remote.dbfs.toFixed(1)} dBFS (bin ${remote.binHz.toFixed(2)} Hz)`);
  check(Math.abs(local.freq - 440) < 5, 'fake microphone plays 440 Hz');
  check(Math.abs(remote.freq - 440) < 5, `echoed tone at ${remote.freq.toFixed(1)} Hz, want 440 Hz`);
  check(remote.dbfs > -35, `echoed level ${remote.dbfs.toFixed(1)} dBFS too low`);
  check(Math.abs(remote.dbfs - local.dbfs) < 6, `echoed level ${remote.dbfs.toFixed(1)} dBFS differs from the microphone's ${local.dbfs.toFixed(1)} dBFS by 6 dB or more`);
  check(await page.evaluate(() => window.__fastrtc.pauseHistory.some((p) => p.state === 'speaking')), 'page shows speaking while audio arrives');
  // The server's figures of the session (GET /stats), shown on the page.
  await waitFor(page, () => window.__fastrtc.serverStats && window.__fastrtc.serverStats.stats.PacketsIn > 100, null, 10000, 'server stats');
  const srv = await page.evaluate(() => window.__fastrtc.serverStats);
  log('server stats: ' + JSON.stringify(srv.stats));
  check(srv.stats.Transport === 'webrtc' && srv.stats.AudioIn > 2e9 && srv.stats.BitrateIn > 10000, 'server counts the audio it got: ' + JSON.stringify(srv.stats));
  check((await page.textContent('[data-testid=stat-srv-loss]')).includes('packets'), 'server-side loss shown on the page');
});

// ---------------------------------------------------------------------------------------
scenario('pause-detection', { kind: 'pause', audio: SPEECH, timeout: 60000 }, async ({ open }) => {
  const page = await open();
  await connect(page);
  // A voice agent's page opens the microphone with the browser's echo cancellation, noise
  // suppression and gain control on (FastRTC's defaults), unlike the echo stream's.
  const settings = await page.evaluate(() => window.__fastrtc.localStream.getAudioTracks()[0].getSettings());
  check(settings.echoCancellation === true && settings.noiseSuppression === true && settings.autoGainControl === true,
    'voice microphone opened with echo cancellation, noise suppression and AGC on: ' + JSON.stringify(settings));
  // The fake microphone loops the file (two utterances, 6.9 s): wait for two replies.
  await waitFor(page, () => window.__fastrtc.logs.filter((l) => l === 'response_starting').length >= 2, null, 30000, 'two response_starting logs');
  await waitFor(page, () => window.__fastrtc.outputs.replies >= 2, null, 5000, 'replies output >= 2');
  const r = await page.evaluate(() => ({
    logs: window.__fastrtc.logs.filter((l) => !l.startsWith('Server received')),
    hist: window.__fastrtc.pauseHistory.map((p) => p.state),
    outs: window.__fastrtc.outputLog,
  }));
  log('logs:', r.logs.join(', '));
  log('page states:', r.hist.join(' > '));
  log('replies:', JSON.stringify(r.outs));
  for (const s of ['listening', 'thinking', 'speaking']) check(r.hist.includes(s), `page showed ${s}`);
  const iThink = r.hist.indexOf('thinking');
  check(r.hist.indexOf('speaking', iThink) > iThink, 'speaking follows thinking');
  check(r.logs.filter((l) => l === 'started_talking').length >= 2 && r.logs.filter((l) => l === 'pause_detected').length >= 2, 'two turns detected');
  // Every complete utterance of the file is 1.2-1.7 s long; the first may be cut by the start.
  const lens = r.outs.map((o) => o.utterance_s).filter((x) => x != null);
  check(lens.slice(1).every((x) => x > 0.8 && x < 3.0), 'utterance lengths plausible: ' + lens.join(', '));
  // The reply is heard: 660 Hz at the moment the page says speaking.
  await waitFor(page, () => window.__fastrtc.pauseState === 'speaking', null, 15000, 'speaking again');
  const m = await measureAudio(page, { source: 'remote', ms: 350 });
  await shot(page, 'pause');
  log(`reply audio: ${m.freq.toFixed(1)} Hz at ${m.dbfs.toFixed(1)} dBFS`);
  check(Math.abs(m.freq - 660) < 8, `reply tone at ${m.freq.toFixed(1)} Hz, want 660 Hz`);
  check(await page.isVisible('[data-testid=pause-state]'), 'pause state visible');
});

// ---------------------------------------------------------------------------------------
scenario('receive-video', { kind: 'video-source' }, async ({ open }) => {
  const page = await open();
  check(!(await page.isVisible('[data-testid=local-video]')), 'receive mode shows no local camera');
  await connect(page);
  await waitFor(page, () => { const v = document.querySelector('#remote-video'); return v.videoWidth > 0 && v.currentTime > 0.5; }, null, 10000, 'remote video playing');
  const local = await page.evaluate(() => !!window.__fastrtc.localStream);
  check(!local, 'receive mode opens no camera');
  // Red left half, blue right half (avoiding the moving bar), bar moves between grabs.
  const g1 = await grab(page, { w: 64, h: 48 });
  await sleep(170);
  const g2 = await grab(page, { w: 64, h: 48 });
  const rowsRGB = (g) => Array.from({ length: 48 }, (_, y) => meanRGB(g.remote, 64, y, y + 1));
  const barRow = (g) => rowsRGB(g).findIndex((c) => Math.min(...c) > 180);
  const clean = (g) => { const b = barRow(g); return Array.from({ length: 48 }, (_, y) => y).filter((y) => b < 0 || Math.abs(y - b) > 4); };
  const ys = clean(g1);
  const left = meanRGB(g1.remote, 64, ys[0], ys[0] + 1, 4, 28), right = meanRGB(g1.remote, 64, ys[0], ys[0] + 1, 36, 60);
  log(`left ${left.map(Math.round)}, right ${right.map(Math.round)}, bar rows ${barRow(g1)} -> ${barRow(g2)}`);
  check(left[0] > 150 && left[1] < 80 && left[2] < 80, 'left half is red');
  check(right[2] > 150 && right[0] < 80 && right[1] < 80, 'right half is blue');
  check(barRow(g1) !== barRow(g2), 'the picture moves (white bar)');
  await sleep(2000);
  const s = await page.evaluate(() => window.__fastrtc.stats.rx.video);
  log(`received ${s.fps} fps, ${s.width}x${s.height}`);
  check(s.fps >= 25, `generator paced at ${s.fps} fps, want >= 25`);
  check(s.width === 640 && s.height === 480, 'full resolution');
  await shot(page, 'receive-video');
});

// ---------------------------------------------------------------------------------------
scenario('receive-audio', { kind: 'audio-source' }, async ({ open }) => {
  const page = await open();
  await connect(page);
  check(!(await page.evaluate(() => !!window.__fastrtc.localStream)), 'receive mode opens no microphone');
  await waitFor(page, () => window.__fastrtc.stats.rx && window.__fastrtc.stats.rx.audio && window.__fastrtc.stats.rx.audio.samples > 24000, null, 10000, 'remote audio samples');
  const m = await measureAudio(page, { source: 'remote', ms: 1500 });
  log(`received ${m.freq.toFixed(1)} Hz at ${m.dbfs.toFixed(1)} dBFS`);
  check(Math.abs(m.freq - 880) < 6, `tone at ${m.freq.toFixed(1)} Hz, want 880`);
  check(m.dbfs > -18 && m.dbfs < -10, `level ${m.dbfs.toFixed(1)} dBFS, want about -13.5 (0.3 peak)`);
  await waitFor(page, () => window.__fastrtc.pauseState === 'speaking', null, 3000, 'speaking shown while audio arrives');
});

// ---------------------------------------------------------------------------------------
scenario('send-only', { kind: 'send', video: CAMERA }, async ({ open }) => {
  const page = await open();
  check(!(await page.isVisible('[data-testid=remote-video]')), 'send mode shows no remote video');
  await connect(page);
  await waitFor(page, () => window.__fastrtc.outputs.frames >= 30, null, 10000, 'frames output >= 30');
  const a = await page.evaluate(() => ({ ...window.__fastrtc.outputs }));
  await sleep(2000);
  const b = await page.evaluate(() => ({ ...window.__fastrtc.outputs, tx: window.__fastrtc.stats.tx.video, rx: window.__fastrtc.stats.rx.video }));
  const shown = await page.textContent('[data-testid=output-mean_luma]');
  log(`outputs: frames ${a.frames} -> ${b.frames} in 2 s, mean luma ${b.mean_luma} (shown "${shown}"), sending ${b.tx && b.tx.fps} fps`);
  check(b.frames - a.frames >= 40, 'the handler sees about 30 frames a second');
  check(b.mean_luma > 60 && b.mean_luma < 140, 'mean luma of the camera pattern plausible');
  check(shown === String(b.mean_luma) || Math.abs(parseFloat(shown) - b.mean_luma) < 20, 'mean luma shown on the page');
  check(!b.rx, 'nothing is received');
  await shot(page, 'send');
});

// ---------------------------------------------------------------------------------------
scenario('handler-error', { kind: 'error', video: CAMERA }, async ({ open }) => {
  const a = await open();
  const b = await open();
  await connect(a);
  await connect(b);
  await waitFor(b, () => window.__fastrtc.stats.rx && window.__fastrtc.stats.rx.video && window.__fastrtc.stats.rx.video.frames > 10, null, 10000, 'page B receives');
  check((await serverStats(base)).error.sessions === 2, 'two sessions');
  await a.check('[data-testid=input-fail]');
  await waitFor(a, () => document.querySelector('[data-testid=toast][data-kind=error]')?.textContent.includes('requested failure'), null, 5000, 'error toast on page A');
  await waitFor(a, () => window.__fastrtc.state === 'failed', null, 8000, 'page A session ended');
  const banner = await a.textContent('[data-testid=banner]');
  await shot(a, 'error');
  log(`page A: toast shown, state failed, banner "${banner}"`);
  const f0 = await b.evaluate(() => window.__fastrtc.stats.rx.video.frames);
  await sleep(2500);
  const sb = await b.evaluate(() => ({ state: window.__fastrtc.state, v: window.__fastrtc.stats.rx.video, toasts: window.__fastrtc.toasts }));
  log(`page B: ${sb.state}, ${sb.v.frames - f0} frames in 2.5 s after A failed`);
  check(sb.state === 'connected', 'page B still connected');
  check(sb.v.frames - f0 > 20, 'page B still receiving video');
  check(sb.toasts.length === 0, 'page B saw no error');
  const st = await serverStats(base);
  check(st.error.sessions === 1, 'only the failing session ended on the server: ' + JSON.stringify(st.error));
  // Page A can start again.
  await a.uncheck('[data-testid=input-fail]');
  await connect(a);
});

// ---------------------------------------------------------------------------------------
scenario('limit-and-end', { kind: 'limit', video: CAMERA }, async ({ open }) => {
  const a = await open();
  const b = await open();
  await connect(a);
  const t0 = Date.now();
  await b.click('[data-testid=start]');
  await waitFor(b, () => window.__fastrtc.state === 'busy', null, 10000, 'page B told the server is busy');
  const msg = await b.textContent('[data-testid=banner]');
  await shot(b, 'busy');
  log(`page B: "${msg}"`);
  check(/busy/i.test(msg) && msg.includes('1 connection ') && /concurrency limit/i.test(msg), 'clear concurrency-limit message with the limit');
  check(await b.isVisible('[data-testid=toast][data-kind=error]'), 'and a toast');
  // The 6 s time limit ends page A's session with end_stream.
  await waitFor(a, () => window.__fastrtc.state === 'ended', null, 12000, 'page A ended by the time limit');
  const reason = await a.evaluate(() => window.__fastrtc.endReason);
  log(`page A ended after ${((Date.now() - t0) / 1000).toFixed(1)} s: "${reason}"`);
  check(/time limit/i.test(reason), 'end_stream message shown');
  check(await a.evaluate(() => !window.__fastrtc.pc && !window.__fastrtc.localStream), 'page A stopped its connection and camera');
  // The slot is freed (the server flushes the end_stream message, then tears down; the
  // library's flush can wait up to 5 s for a data channel the client already closed).
  const tEnd = Date.now();
  await expectServerClean(base, 'limit', 8000);
  log(`slot free ${Date.now() - tEnd} ms after page A saw end_stream`);
  await connect(b);
});

// ---------------------------------------------------------------------------------------
scenario('audio-video', { kind: 'av', video: CAMERA, audio: TONE }, async ({ open }) => {
  const page = await open();
  await connect(page);
  await waitFor(page, () => { const v = document.querySelector('#remote-video'); return v.videoWidth > 0 && v.currentTime > 0.5; }, null, 10000, 'remote video playing');
  const g = await grab(page);
  const dFlip = diff(g.remote, g.localFlipped, g.w);
  const m = await measureAudio(page, { source: 'remote', ms: 1200 });
  await sleep(1000);
  const s = await page.evaluate(() => window.__fastrtc.stats);
  log(`video ${s.rx.video.fps} fps, flipped diff ${dFlip.toFixed(1)}; audio ${m.freq.toFixed(1)} Hz at ${m.dbfs.toFixed(1)} dBFS`);
  check(dFlip < 14, 'video comes back flipped');
  check(s.rx.video.fps >= 20, 'video frame rate');
  check(Math.abs(m.freq - 440) < 5 && m.dbfs > -35, 'audio comes back');
});

// ---------------------------------------------------------------------------------------
scenario('ice-slow', { kind: 'stall', video: CAMERA }, async ({ open }) => {
  const page = await open();
  await page.click('[data-testid=start]');
  await waitFor(page, () => window.__fastrtc.timing.answered != null, null, 10000, 'answer received');
  const t0 = Date.now();
  await waitFor(page, () => window.__fastrtc.iceSlow, null, 10000, 'ICE-slow message');
  const msg = await page.textContent('[data-testid=banner]');
  log(`after ${((Date.now() - t0) / 1000).toFixed(1)} s: "${msg}"`);
  check(/ICE/.test(msg) && /TURN/.test(msg), 'message says ICE is slow and suggests TURN');
  check(await page.evaluate(() => window.__fastrtc.state) === 'connecting', 'still connecting');
  await page.click('[data-testid=start]'); // Cancel
  check(await page.evaluate(() => window.__fastrtc.state) === 'closed', 'cancelled');
});

// ---------------------------------------------------------------------------------------
// The voice agent of examples/talk (PocketSphinx in, espeak-ng out) through the built-in page:
// by voice (the fake microphone asks a question), then by typing in the page's text box.
const peakMeter = () => {
  // Tracks the loudest 100 ms of the remote audio in window.__peak (dBFS).
  const a = window.__fastrtc;
  const el = document.querySelector('#remote-audio');
  if (!el || !el.srcObject || window.__peakOn) return !!window.__peakOn;
  window.__peakOn = true; window.__peak = -200;
  const ctx = new AudioContext();
  ctx.resume();
  const an = ctx.createAnalyser(); an.fftSize = 4096;
  ctx.createMediaStreamSource(new MediaStream(el.srcObject.getAudioTracks())).connect(an);
  const td = new Float32Array(an.fftSize);
  setInterval(() => { an.getFloatTimeDomainData(td); let s = 0; for (const v of td) s += v * v;
    window.__peak = Math.max(window.__peak, 10 * Math.log10(s / td.length + 1e-12)); }, 100);
  return a.state === 'connected';
};
scenario('talk-voice-text', { kind: 'talk', audio: QUESTION, timeout: 60000 }, async ({ open }) => {
  const page = await open();
  check(await page.isVisible('[data-testid=chat-text]'), 'the page shows a text box for the agent');
  await connect(page);
  await waitFor(page, () => document.querySelector('#remote-audio') && document.querySelector('#remote-audio').srcObject, null, 10000, 'remote audio');
  await page.evaluate(peakMeter);
  const said = await waitFor(page, () => { const t = window.__fastrtc.transcript; const u = t.find((l) => l.role === 'user');
    return u && t.some((l) => l.role === 'assistant' && l.text.startsWith('You said')) ? t : null; }, null, 20000, 'a spoken turn transcribed and answered');
  log('by voice: ' + JSON.stringify(said.slice(0, 2)));
  check(said.find((l) => l.role === 'user').text.includes('weather'), 'the transcript has the spoken words (weather)');
  check(await page.locator('[data-testid=transcript-line]').count() >= 2, 'the page shows the transcript lines');
  const partials = await page.evaluate(() => window.__fastrtc.partials);
  log('partials: ' + JSON.stringify(partials.slice(0, 8)));
  check(partials.some((p) => !p.final && p.text) && partials.some((p) => p.final), 'live partial transcripts came while speaking, then a final one');
  await waitFor(page, () => window.__peak > -40, null, 10000, 'the spoken reply is audible (> -40 dBFS)');
  log(`reply peak ${(await page.evaluate(() => window.__peak)).toFixed(1)} dBFS`);
  await page.fill('[data-testid=chat-text]', 'hello from the keyboard');
  await page.press('[data-testid=chat-text]', 'Enter');
  await waitFor(page, () => window.__fastrtc.transcript.some((l) => l.role === 'assistant' && l.text === 'You said: hello from the keyboard'),
    null, 10000, 'the typed line answered');
  await shot(page, 'talk');
});

// With a wake phrase: the agent sends "stopword" and answers the words after it.
scenario('talk-wake', { kind: 'talk-wake', audio: WAKE, timeout: 60000 }, async ({ open }) => {
  const page = await open();
  await connect(page);
  await waitFor(page, () => (window.__fastrtc.stopwords || 0) >= 1, null, 20000, 'a stopword message');
  const t = await waitFor(page, () => { const t = window.__fastrtc.transcript; return t.some((l) => l.role === 'assistant') ? t : null; }, null, 15000, 'an answer');
  log('after the wake phrase: ' + JSON.stringify(t.slice(0, 2)));
  const user = t.find((l) => l.role === 'user');
  check(user && user.text.includes('weather') && !user.text.includes('computer'), 'the answer is to the words after "hello computer"');
});

// A page of our own that talks to the agent the way FastRTC's send_text_or_audio demo does:
// WebRTC with a "text" data channel, then {webrtc_id, chatbot, state, textbox} posted to
// /input_hook; the reply is triggered by the text (transcript messages, speech back).
const ownPageText = async ({ prefix }) => {
  const id = 'own' + Math.random().toString(36).slice(2, 10);
  const r = { id, messages: [], remoteAudio: false };
  window.__own = r;
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  const pc = new RTCPeerConnection();
  mic.getTracks().forEach((t) => pc.addTrack(t, mic));
  pc.ontrack = () => { r.remoteAudio = true; };
  const dc = pc.createDataChannel('text');
  dc.onmessage = (e) => r.messages.push(JSON.parse(e.data));
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((ok) => { if (pc.iceGatheringState === 'complete') ok(); pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && ok(); });
  const ans = await (await fetch(prefix + '/webrtc/offer', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: 'offer', webrtc_id: id }) })).json();
  await pc.setRemoteDescription(ans);
  await new Promise((ok) => { const f = () => pc.connectionState === 'connected' && ok(); pc.onconnectionstatechange = f; f(); });
  await new Promise((ok) => { if (dc.readyState === 'open') ok(); dc.onopen = ok; });
  const res = await fetch(prefix + '/input_hook', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ webrtc_id: id, chatbot: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }], state: [], textbox: 'tell me a joke' }) });
  r.status = res.status;
  window.__ownPc = pc;
  return r.status;
};
scenario('own-page-text', { kind: 'blank', audio: TONE, timeout: 40000 }, async ({ open }) => {
  const page = await open();
  const status = await page.evaluate(ownPageText, { prefix: '/talk' });
  check(status === 200, 'input_hook accepted chatbot, state and textbox: HTTP ' + status);
  const msgs = await waitFor(page, () => { const m = window.__own.messages.filter((x) => x.type === 'transcript'); return m.length >= 2 ? m : null; }, null, 10000, 'transcript messages');
  log('text turn: ' + JSON.stringify(msgs.map((m) => m.data)));
  check(msgs[0].data.role === 'user' && msgs[0].data.text === 'tell me a joke' && msgs[1].data.text === 'You said: tell me a joke', 'the posted textbox was answered');
  await waitFor(page, () => window.__own.remoteAudio, null, 10000, 'the reply audio track');
  await page.evaluate(() => window.__ownPc.close());
});

// A page of our own that, as FastRTC's webrtc_vs_websocket demo does, opens its EventSource
// on /outputs before it starts the WebSocket session; the outputs must still arrive.
scenario('own-page-sse-first', { kind: 'blank', timeout: 40000 }, async ({ open }) => {
  const page = await open();
  const r = await page.evaluate(async ({ prefix }) => {
    const id = 'ws' + Math.random().toString(36).slice(2, 10);
    const got = { events: [], media: 0, open: false };
    window.__ws = got;
    const es = new EventSource(prefix + '/outputs?webrtc_id=' + id); // before the session exists
    es.addEventListener('output', (e) => got.events.push(JSON.parse(e.data)));
    es.onopen = () => { got.open = true; };
    await new Promise((ok) => setTimeout(ok, 800));
    const ws = new WebSocket(location.origin.replace('http', 'ws') + prefix + '/websocket/offer');
    window.__wsSock = ws;
    ws.onmessage = (e) => { const m = JSON.parse(e.data); if (m.event === 'media') got.media++; };
    await new Promise((ok) => { ws.onopen = ok; });
    ws.send(JSON.stringify({ event: 'start', websocket_id: id }));
    await new Promise((ok) => setTimeout(ok, 500));
    const res = await fetch(prefix + '/input_hook', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ webrtc_id: id, textbox: 'good morning' }) });
    return res.status;
  }, { prefix: '/talk' });
  check(r === 200, 'input_hook for the WebSocket session: HTTP ' + r);
  const ev = await waitFor(page, () => { const e = window.__ws.events.filter((x) => x.transcript); return e.length >= 2 ? e : null; }, null, 10000, 'outputs on the EventSource opened first');
  log('outputs: ' + JSON.stringify(ev.map((e) => e.transcript)));
  check(ev[1].transcript.text === 'You said: good morning', 'the answer arrived as an output');
  await waitFor(page, () => window.__ws.media > 20, null, 10000, 'reply audio over the WebSocket');
  await page.evaluate(() => window.__wsSock.close());
});

// The OpenAI Realtime bridge against the server's fake model (cmd/e2eserver realtime.go): a
// spoken question reaches the model as 24 kHz PCM, the model's 6 s reply (sent at once)
// plays, the looped question comes again over it (barge-in): the reply's packets stop within
// 100 ms of the model's speech_started, and the bridge truncates the reply item to the audio
// the browser actually received (its RTP packets, 20 ms each).
scenario('realtime-barge-in', { kind: 'realtime', audio: QUESTION, timeout: 60000 }, async ({ open }) => {
  const page = await open();
  await connect(page);
  await page.evaluate(() => { // FastRTC's voice demos' chat, as their pages read /outputs
    window.__chat = [];
    const es = new EventSource(location.pathname + 'outputs?webrtc_id=' + encodeURIComponent(window.__fastrtc.webrtcId));
    es.addEventListener('output', (event) => { const eventJson = JSON.parse(event.data);
      window.__chat.push({ role: eventJson.message.role, content: eventJson.audio ?? eventJson.message.content }); });
  });
  await page.evaluate(() => { // every increase of the received audio packets, with its time
    const api = window.__fastrtc;
    window.__rx = { n: 0, log: [] };
    setInterval(async () => {
      if (!api.pc) return;
      (await api.pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio' && r.packetsReceived > window.__rx.n) {
          window.__rx.n = r.packetsReceived; window.__rx.log.push([Date.now(), r.packetsReceived]);
        }
      });
    }, 10);
  });
  let dbg;
  const t0 = Date.now();
  for (;;) {
    dbg = await (await fetch(base + '/debug/realtime')).json();
    if (dbg.truncates.length && dbg.barge_ins.length) break;
    if (Date.now() - t0 > 30000) throw new Error('no barge-in with a truncation: ' + JSON.stringify(dbg));
    await sleep(200);
  }
  await sleep(600);
  const rx = await page.evaluate(() => window.__rx.log);
  const barge = dbg.barge_ins[0];
  const reply = dbg.replies.find((r) => r.item === barge.item);
  const trunc = dbg.truncates.find((t) => t.item === barge.item);
  check(reply && trunc, 'the interrupted reply was truncated: ' + JSON.stringify(dbg));
  log(`model: ${dbg.samples} samples appended at ${dbg.append_rate_hz} Hz; reply ${reply.item}; barge-in; truncate at ${trunc.audio_end_ms} ms`);
  check(Math.abs(dbg.append_rate_hz - 24000) < 2400, `the question reached the model as 24 kHz PCM (measured ${dbg.append_rate_hz} Hz)`);
  const before = rx.filter(([t]) => t < reply.at).map(([, n]) => n).pop() || 0;
  const within = rx.filter(([t]) => t >= reply.at && t <= barge.at + 400);
  check(within.length > 0, 'reply packets arrived');
  const received = (within[within.length - 1][1] - before) * 20;
  const lastAfter = within.filter(([t]) => t > barge.at).map(([t]) => t).pop();
  const stop = lastAfter ? lastAfter - barge.at : 0;
  log(`browser: ${received} ms of reply received; last reply packet ${stop} ms after speech_started; truncate says ${trunc.audio_end_ms} ms`);
  check(stop <= 100, `the reply's audio stopped within 100 ms of the interruption (took ${stop} ms)`);
  check(Math.abs(received - trunc.audio_end_ms) <= 100, `the truncation carries the played duration (${trunc.audio_end_ms} ms vs ${received} ms received)`);
  check(trunc.audio_end_ms < 5000, 'played, not generated (6 s were generated)');
  const lines = await waitFor(page, () => { const t = window.__fastrtc.transcript;
    return t.some((l) => l.role === 'user') && t.some((l) => l.role === 'assistant' && l.text === 'It is sunny today.') ? t : null; },
  null, 10000, 'transcripts of both sides');
  log('transcript: ' + JSON.stringify(lines.slice(0, 2)));
  const chat = await waitFor(page, () => window.__chat.some((m) => m.role === 'assistant' && m.content === 'It is sunny today.') ? window.__chat : null,
    null, 5000, "the chat on /outputs in FastRTC's {message: {role, content}} shape (the built-in page reads /outputs too: the two readers share the lines)");
  log('chat outputs (FastRTC shape): ' + JSON.stringify(chat.slice(-2)));
  await shot(page, 'realtime');
});

// ---------------------------------------------------------------------------------------
async function runScenario(sc) {
  const { kind, video, audio, timeout = 45000 } = sc.opts;
  const browser = await launch({ video, audio });
  const pages = [];
  const url = kind === 'blank' ? base + '/blank' : base + '/' + kind + '/';
  const open = async () => { const p = await newPage(browser, url); pages.push(p); return p; };
  let timer;
  try {
    await Promise.race([
      sc.fn({ open, browser }),
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error('scenario timed out after ' + timeout + ' ms')), timeout); }),
    ]);
  } catch (e) {
    for (const [i, p] of pages.entries()) {
      const f = join(OUT, `fail-${sc.name}-${i}.png`);
      await p.screenshot({ path: f }).catch(() => {});
      if (p.consoleLog.length) console.log('    console of page', i, ':\n      ' + p.consoleLog.slice(-15).join('\n      '));
    }
    throw e;
  } finally {
    clearTimeout(timer);
    // Press Stop on every page (as a user would): the server must free the session at once.
    for (const p of pages) await p.evaluate(() => window.__fastrtc && window.__fastrtc.stop()).catch(() => {});
    await browser.close().catch(() => {});
  }
  const ms = await expectServerClean(base, kind === 'blank' ? 'talk' : kind);
  log(`server freed the sessions and codecs ${ms} ms after Stop`);
}

async function main() {
  for (const f of [CAMERA, TONE, SPEECH, QUESTION, WAKE]) if (!existsSync(f)) throw new Error('missing ' + f + ' (run e2e/run.sh)');
  for (const f of readdirSync(OUT)) if (/^fail-.*\.png$/.test(f)) unlinkSync(join(OUT, f));
  const server = await startServer('all');
  base = server.base;
  console.log(`e2e: server ${base} (pid ${server.pid}), chromium ${process.env.CHROMIUM || '/usr/bin/chromium'}`);
  const results = [];
  const t0 = Date.now();
  try {
    for (const sc of scenarios) {
      if (only && !only.includes(sc.name)) continue;
      const t = Date.now();
      console.log(`--- ${sc.name}`);
      try {
        await runScenario(sc);
        results.push({ name: sc.name, ok: true, ms: Date.now() - t });
        console.log(`ok   ${sc.name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
      } catch (e) {
        results.push({ name: sc.name, ok: false, ms: Date.now() - t, err: e.message });
        console.log(`FAIL ${sc.name} (${((Date.now() - t) / 1000).toFixed(1)} s): ${e.message}`);
      }
    }
  } finally {
    await server.stop();
  }
  const passed = results.filter((r) => r.ok).length, failed = results.length - passed;
  console.log('\nbrowser suite summary:');
  for (const r of results) console.log(`  ${r.ok ? 'ok  ' : 'FAIL'} ${r.name.padEnd(16)} ${(r.ms / 1000).toFixed(1).padStart(5)} s${r.ok ? '' : '  ' + r.err}`);
  console.log(`  total ${((Date.now() - t0) / 1000).toFixed(1)} s; server log: e2e/out/server.log`);
  console.log(`e2e: ${passed} passed, ${failed} failed`);
  process.exitCode = failed || !results.length ? 1 : 0;
}

main().catch((e) => { console.error('e2e:', e); process.exitCode = 1; });
