// The browser tests in Firefox: Debian's firefox-esr, headless, driven over WebDriver BiDi by
// puppeteer-core, through the built-in page of cmd/e2eserver and its window.__fastrtc hooks.
// firefox.sh sets up the namespaces, the server and PulseAudio, and runs this in the client
// namespace:
//
//   node firefox.mjs [--only name,name]      (E2E_FF_BASE=http://10.212.0.1:8000)
//   node firefox.mjs --link loss5 [--only ...]  the scenarios through that emulated link
//                                               (E2E_FF_BASE=http://10.211.1.2:8000)
//   node firefox.mjs --list [--only ...]        "name link" per scenario (link: - for none)
//   node firefox.mjs --summary FILE             the table of the results in FILE
//
// A scenario with a `link` runs only with --link naming it (firefox.sh builds that link with
// scripts/netem.sh and runs such scenarios in a second pass), the others only without.
// E2E_FF_RESULTS=FILE appends each scenario's result to FILE (one JSON object a line).
//
// flip-loss5 runs the flip through scripts/netem.sh's loss5 link (20 ms, 5% loss each way)
// and measures what badlink.mjs measures in Chromium (firefox-link.mjs): fps, frozen time,
// camera-to-screen lag, height; it asserts a regression floor and prints the targets.
//
// Firefox's fake devices are not files as in Chromium: the camera is a plain colour field
// that changes colour over time, the microphone a continuous tone (1000 Hz by default,
// media.navigator.audio.fake_frequency). Where a scenario needs content the fake devices
// cannot give (a picture with a top and a bottom, speech with pauses), the page's
// getUserMedia is replaced before the page loads by one that returns a canvas or a WebAudio
// stream: the page, the WebRTC stack and the server are Firefox's and ours all the same.
import puppeteer from 'puppeteer-core';
import { appendFileSync, mkdirSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { ROOT, sleep, check, AssertionError, grab, diff, meanRGB, measureAudio, expectServerClean } from './lib.mjs';
import { linkCamera, linkMeter, summarizeLink } from './firefox-link.mjs';

const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';
const BASE = process.env.E2E_FF_BASE || 'http://10.212.0.1:8000';
const OUT = process.env.E2E_FF_OUT || join(ROOT, 'e2e', 'out', 'firefox');
mkdirSync(OUT, { recursive: true });
const SPEECH = join(ROOT, 'testdata/audio/two_utterances48k.wav'); // two utterances, 6.9 s
const FAKE_TONE_HZ = 1000; // Firefox's fake microphone (set explicitly below)

const argv = process.argv.slice(2);
const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1].split(',') : null;
const link = argv.includes('--link') ? argv[argv.indexOf('--link') + 1] : null;
const log = (...a) => console.log('   ', ...a);

const scenarios = [];
/** scenario(name, {kind, timeout, init, initArg, link}, async ({open}) => {...}) */
function scenario(name, opts, fn) { scenarios.push({ name, opts, fn }); }

// ---------------------------------------------------------------------------------------
// Browser and page helpers (puppeteer's API; lib.mjs's page helpers that only call
// page.evaluate(fn, arg) work with both).

/** A fresh Firefox with its own temporary profile (puppeteer makes one per launch). */
async function launchFirefox() {
  const host = new URL(BASE).hostname;
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false, // main's handler below
    timeout: 30000,
    protocolTimeout: 30000,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true, // fake camera and microphone
      'media.navigator.permission.disabled': true, // no permission prompt
      'media.navigator.audio.fake_frequency': FAKE_TONE_HZ,
      'media.autoplay.default': 0, // allow audible autoplay (the remote <audio>)
      'media.autoplay.block-webaudio': false, // AudioContext runs without a user gesture
      // The page comes from the server's veth address, plain http: treat it as a secure
      // context so that navigator.mediaDevices exists.
      'dom.securecontext.allowlist': host,
      // Host candidates as addresses, not mDNS names (pages whose getUserMedia is replaced
      // never get a capture permission, and Firefox then hides its address).
      'media.peerconnection.ice.obfuscate_host_addresses': false,
      // Keep the camera's resolution. Otherwise Firefox's encoder starts small and scales up
      // with its bandwidth estimate: measured here, 320x240 for ~5 s, 480x360 until ~15 s,
      // then 640x480 (the fake camera's flat picture encodes to ~150 kbit/s).
      'media.peerconnection.video.lock_scaling': true,
      // Quiet: no update checks, telemetry or first-run pages.
      'app.update.enabled': false, 'browser.shell.checkDefaultBrowser': false,
      'datareporting.policy.dataSubmissionEnabled': false, 'toolkit.telemetry.enabled': false,
      ...JSON.parse(process.env.E2E_FF_PREFS || '{}'), // more, for experiments
    },
  });
}

async function newPage(browser, url) {
  const page = await browser.newPage();
  page.consoleLog = [];
  page.on('console', (m) => { page.consoleLog.push(m.type() + ': ' + m.text()); });
  page.on('pageerror', (e) => { page.consoleLog.push('pageerror: ' + (e && e.message)); });
  await page.setViewport({ width: 1280, height: 860 });
  return page;
}

/** waitFor polls fn(arg) in the page until it returns a truthy value and returns that value. */
async function waitFor(page, fn, arg, timeout = 15000, what = '') {
  try {
    const h = await page.waitForFunction(fn, { timeout, polling: 100 }, arg);
    return await h.jsonValue();
  } catch (e) {
    const snap = await page.evaluate(() => {
      const a = window.__fastrtc;
      return a ? { state: a.state, error: a.error, endReason: a.endReason, toasts: a.toasts.map((t) => t.text), stats: a.stats,
        pause: a.pauseHistory.map((p) => p.state), logs: a.logs.slice(-20), outputs: a.outputs } : null;
    }).catch(() => null);
    throw new AssertionError('timed out after ' + timeout + ' ms waiting for ' + (what || fn.toString().slice(0, 120)) + '; page: ' + JSON.stringify(snap));
  }
}

/** Presses Start on the built-in page and waits for the connection. */
async function connect(page, timeout = 20000) {
  await page.click('[data-testid=start]');
  const st = await waitFor(page, () => ['connected', 'failed', 'busy', 'ended', 'closed'].includes(window.__fastrtc.state) && window.__fastrtc.state,
    null, timeout, 'state connected');
  if (st !== 'connected') {
    const why = await page.evaluate(() => window.__fastrtc.endReason || window.__fastrtc.error);
    throw new AssertionError(`page went ${st} instead of connected: ${why}`);
  }
  log('timing (ms since Start):', JSON.stringify(await page.evaluate(() => window.__fastrtc.timing)));
}

const text = (page, sel) => page.$eval(sel, (e) => e.textContent);

/** Video RTP stats straight from getStats (not the page's 1 s poll): inbound, and the frames sent. */
const inboundVideo = (page) => page.evaluate(async () => {
  const pc = window.__fastrtc.pc;
  if (!pc) return null;
  let v = null, o = null;
  (await pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') v = r;
    if (r.type === 'outbound-rtp' && r.kind === 'video') o = r;
  });
  return v && { framesEncoded: o ? o.framesEncoded : null, framesDecoded: v.framesDecoded, framesPerSecond: v.framesPerSecond ?? null, frameWidth: v.frameWidth, frameHeight: v.frameHeight,
    framesDropped: v.framesDropped ?? null, timestamp: v.timestamp, now: performance.now() };
});

/** Frame rate by inbound-rtp framesDecoded over ms milliseconds (page clock). */
async function decodedFps(page, ms = 3000) {
  const a = await inboundVideo(page);
  await sleep(ms);
  const b = await inboundVideo(page);
  check(a && b, 'inbound-rtp video stats');
  const sec = (b.now - a.now) / 1000;
  return { fps: (b.framesDecoded - a.framesDecoded) / sec, sentFps: b.framesEncoded == null ? null : (b.framesEncoded - a.framesEncoded) / sec, last: b };
}

async function shot(page, name) {
  await page.screenshot({ path: join(OUT, name + '.png') });
}

const remotePlaying = () => { const v = document.querySelector('#remote-video'); return v && v.videoWidth > 0 && v.currentTime > 0.5; };

/** Mean RGB of the top and bottom halves and of the whole of an RGBA frame grab. */
function halves(px, w, h) {
  return { top: meanRGB(px, w, 0, h / 2), bottom: meanRGB(px, w, h / 2, h), all: meanRGB(px, w, 0, h) };
}
const rgbDist = (a, b) => Math.max(...a.map((v, i) => Math.abs(v - b[i])));
const fmt = (c) => '(' + c.map((v) => v.toFixed(0)).join(',') + ')';

// ---------------------------------------------------------------------------------------
// flip with Firefox's own fake camera: a plain colour field. Nothing in it tells top from
// bottom (checked below), so the flip itself is checked by flip-pattern; here: the video
// comes back and plays at the camera's size and frame rate, in the camera's colour.
scenario('flip', { kind: 'flip' }, async ({ open }) => {
  const page = await open();
  check(await text(page, '[data-testid=title]') === 'Flip', 'title from WithTitle');
  await connect(page);
  await waitFor(page, remotePlaying, null, 10000, 'remote video playing');
  const size = await page.evaluate(() => {
    const l = document.querySelector('#local-video'), r = document.querySelector('#remote-video');
    const s = window.__fastrtc.localStream.getVideoTracks()[0].getSettings();
    return { local: [l.videoWidth, l.videoHeight], remote: [r.videoWidth, r.videoHeight], track: [s.width, s.height], fps: s.frameRate };
  });
  log(`camera track ${size.track.join('x')} @${size.fps}; local video ${size.local.join('x')}, remote video ${size.remote.join('x')}`);
  // Pixels. The colour of the fake camera moves slowly (a few units per 100 ms) and the
  // received frame is a frame or two behind, so compare with a tolerance.
  const samples = [];
  for (let i = 0; i < 5; i++) {
    const g = await grab(page);
    check(g.remote && g.local, 'both videos have frames');
    samples.push({ local: halves(g.local, g.w, g.h), remote: halves(g.remote, g.w, g.h),
      flipped: diff(g.remote, g.localFlipped, g.w) });
    await sleep(200);
  }
  const s = samples[2];
  log(`local top ${fmt(s.local.top)} bottom ${fmt(s.local.bottom)}; remote top ${fmt(s.remote.top)} bottom ${fmt(s.remote.bottom)}; mean |remote - flipped local| ${s.flipped.toFixed(1)}`);
  const structure = Math.max(...samples.map((x) => rgbDist(x.local.top, x.local.bottom)));
  if (structure > 30) {
    // A camera with a top and a bottom (not Firefox's fake one, as of ESR 153): the remote
    // top is the local bottom and vice versa.
    const ok = samples.filter((x) => rgbDist(x.remote.top, x.local.bottom) < 25 && rgbDist(x.remote.bottom, x.local.top) < 25).length;
    check(ok >= 3, 'remote halves are the local halves swapped');
  } else {
    // The fake camera's frame is one colour top to bottom: flipped or not looks the same, so
    // only the colour is checked (the median over 5 grabs, within 25/255 per channel).
    log(`fake camera has no vertical structure (top/bottom differ by ${structure.toFixed(1)}): checking the colour only`);
    const d = samples.map((x) => rgbDist(x.remote.all, x.local.all)).sort((a, b) => a - b);
    check(d[2] < 25, `received colour should match the camera's (median max channel difference ${d[2].toFixed(1)})`);
    check(samples.every((x) => rgbDist(x.remote.top, x.remote.bottom) < 25), 'received frame is one colour too (no corruption)');
  }
  // Frame size and rate.
  check(size.remote[0] === size.local[0] && size.remote[1] === size.local[1], `remote frame ${size.remote.join('x')} should equal local ${size.local.join('x')}`);
  await sleep(1000);
  const { fps, sentFps, last } = await decodedFps(page, 3000);
  log(`received: ${fps.toFixed(1)} fps (framesDecoded delta over 3 s; sent ${sentFps.toFixed(1)}), getStats framesPerSecond ${last.framesPerSecond}, ${last.frameWidth}x${last.frameHeight}, dropped ${last.framesDropped}`);
  check(fps >= 20, `decoded frame rate ${fps.toFixed(1)} < 20`);
  check(last.frameWidth === size.local[0] && last.frameHeight === size.local[1], `getStats frame size ${last.frameWidth}x${last.frameHeight} should equal local ${size.local.join('x')}`);
  check(/\d+ fps/.test(await text(page, '[data-testid=stat-rx-fps]')), 'fps shown on the page');
  await shot(page, 'flip');
});

// ---------------------------------------------------------------------------------------
// flip with a picture that has a top and a bottom: the page's getUserMedia returns a 640x480
// canvas at 30 fps (colour bars that differ between top and bottom, and a moving square).
const canvasCamera = () => {
  const md = navigator.mediaDevices;
  if (!md) return;
  const orig = md.getUserMedia.bind(md);
  window.__gum = [];
  md.getUserMedia = async (c) => {
    window.__gum.push(JSON.parse(JSON.stringify(c)));
    if (!c || !c.video || c.audio) return orig(c);
    const cv = document.createElement('canvas');
    cv.width = 640; cv.height = 480;
    const g = cv.getContext('2d');
    const bars = ['#c0c0c0', '#c0c000', '#00c0c0', '#00c000', '#c000c0', '#c00000', '#0000c0'];
    let n = 0;
    const draw = () => {
      bars.forEach((b, i) => { g.fillStyle = b; g.fillRect(i * 640 / 7, 0, 640 / 7 + 1, 300); });
      g.fillStyle = '#202020'; g.fillRect(0, 300, 640, 180);
      g.fillStyle = '#f0f0f0'; g.fillRect(40 + (n * 4) % 520, 340, 80, 80); // moving square, bottom part
      n++;
    };
    draw();
    setInterval(draw, 15); // changes more often than 30 fps: captureStream(30) then captures 30 a second
    return cv.captureStream(30);
  };
};
scenario('flip-pattern', { kind: 'flip', init: canvasCamera }, async ({ open }) => {
  const page = await open();
  await connect(page);
  check(await page.evaluate(() => window.__gum.length === 1 && !!window.__gum[0].video), 'the page asked for the camera');
  await waitFor(page, remotePlaying, null, 10000, 'remote video playing');
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
  const { fps, sentFps, last } = await decodedFps(page, 3000);
  log(`received: ${fps.toFixed(1)} fps (sent ${sentFps.toFixed(1)}), ${last.frameWidth}x${last.frameHeight}`);
  // The canvas source itself runs at ~23 fps here (Firefox's canvas capture on 2 cores): the
  // server must return what it gets.
  check(sentFps >= 15, `canvas camera sent only ${sentFps.toFixed(1)} fps`);
  check(fps >= 0.85 * sentFps, `decoded frame rate ${fps.toFixed(1)} < 85% of the ${sentFps.toFixed(1)} fps sent`);
  check(last.frameWidth === 640 && last.frameHeight === 480, 'received at 640x480');
  await shot(page, 'flip-pattern');
});

// ---------------------------------------------------------------------------------------
// audio echo with Firefox's fake microphone (a continuous tone).
scenario('audio-echo', { kind: 'echo' }, async ({ open }) => {
  const page = await open();
  await connect(page);
  const settings = await page.evaluate(() => window.__fastrtc.localStream.getAudioTracks()[0].getSettings());
  check(settings.echoCancellation === false && settings.noiseSuppression === false && settings.autoGainControl === false,
    'microphone opened with echo cancellation, noise suppression and AGC off: ' + JSON.stringify(settings));
  await waitFor(page, () => window.__fastrtc.stats.rx && window.__fastrtc.stats.rx.audio && window.__fastrtc.stats.rx.audio.samples > 24000,
    null, 10000, 'remote audio samples (getStats)');
  const local = await measureAudio(page, { source: 'local', ms: 1200 });
  const remote = await measureAudio(page, { source: 'remote', ms: 2000 });
  check(!local.error && !remote.error, 'audio measured: ' + (local.error || remote.error));
  log(`mic: ${local.freq.toFixed(1)} Hz at ${local.dbfs.toFixed(1)} dBFS; echoed: ${remote.freq.toFixed(1)} Hz at ${remote.dbfs.toFixed(1)} dBFS (bin ${remote.binHz.toFixed(2)} Hz, ${remote.sampleRate} Hz)`);
  check(Math.abs(local.freq - FAKE_TONE_HZ) <= 10, `fake microphone plays ${FAKE_TONE_HZ} Hz (measured ${local.freq.toFixed(1)})`);
  check(Math.abs(remote.freq - FAKE_TONE_HZ) <= 10, `echoed tone at ${remote.freq.toFixed(1)} Hz, want ${FAKE_TONE_HZ} +-10 Hz`);
  check(remote.dbfs > -30, `echoed level ${remote.dbfs.toFixed(1)} dBFS: too close to silence`);
  check(Math.abs(remote.dbfs - local.dbfs) < 6, `echoed level ${remote.dbfs.toFixed(1)} dBFS differs from the microphone's ${local.dbfs.toFixed(1)} dBFS by 6 dB or more`);
  check(await page.evaluate(() => window.__fastrtc.pauseHistory.some((p) => p.state === 'speaking')), 'page shows speaking while audio arrives');
  // The server's figures of the session (GET /stats), as the page shows them.
  await waitFor(page, () => window.__fastrtc.serverStats && window.__fastrtc.serverStats.stats.PacketsIn > 100, null, 10000, 'server stats');
  const srv = (await page.evaluate(() => window.__fastrtc.serverStats)).stats;
  log(`server stats: ${srv.PacketsIn} packets in, ${srv.PacketsLost} counted lost, audio in ${(srv.AudioIn / 1e9).toFixed(1)} s, out ${(srv.AudioOut / 1e9).toFixed(1)} s, ${Math.round(srv.BitrateIn / 1000)} kbit/s in`);
  check(srv.Transport === 'webrtc' && srv.AudioIn > 2e9 && srv.AudioOut > 2e9 && srv.BitrateIn > 10000, 'server counts the audio it got and sent: ' + JSON.stringify(srv));
  await shot(page, 'audio-echo');
});

// ---------------------------------------------------------------------------------------
// ReplyOnPause. Firefox's fake microphone is a continuous tone: no pauses to detect. The
// page's getUserMedia returns instead the repo's two-utterance recording, looped through
// WebAudio (an AudioBufferSourceNode into a MediaStreamAudioDestinationNode).
const speechMic = (b64) => {
  const md = navigator.mediaDevices;
  if (!md) return;
  const orig = md.getUserMedia.bind(md);
  window.__gum = [];
  md.getUserMedia = async (c) => {
    window.__gum.push(JSON.parse(JSON.stringify(c)));
    if (!c || !c.audio || c.video) return orig(c);
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const ctx = new AudioContext({ sampleRate: 48000 });
    const buf = await ctx.decodeAudioData(bytes.buffer);
    const src = ctx.createBufferSource();
    src.buffer = buf; src.loop = true;
    const dst = ctx.createMediaStreamDestination();
    src.connect(dst);
    src.start();
    await ctx.resume();
    window.__micCtx = ctx;
    window.__micSeconds = buf.duration;
    return dst.stream;
  };
};
scenario('pause-detection', { kind: 'pause', init: speechMic, initArg: () => readFileSync(SPEECH).toString('base64'), timeout: 60000 }, async ({ open }) => {
  const page = await open();
  await connect(page);
  // A voice agent's page asks for echo cancellation, noise suppression and gain control
  // (FastRTC's defaults); the replaced getUserMedia saw what the page asked for.
  const gum = await page.evaluate(() => window.__gum);
  check(gum.length === 1 && gum[0].audio && gum[0].audio.echoCancellation === true && gum[0].audio.noiseSuppression === true && gum[0].audio.autoGainControl === true,
    'voice page asked for echo cancellation, noise suppression and AGC: ' + JSON.stringify(gum));
  log(`microphone: the two-utterance recording (${(await page.evaluate(() => window.__micSeconds)).toFixed(1)} s), looped`);
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
  // The file's utterances are 1.2-1.7 s long; the first turn may be cut by the start.
  const lens = r.outs.map((o) => o.utterance_s).filter((x) => x != null);
  check(lens.slice(1).every((x) => x > 0.8 && x < 3.0), 'utterance lengths plausible: ' + lens.join(', '));
  // The reply is heard: 660 Hz while the page says speaking.
  await waitFor(page, () => window.__fastrtc.pauseState === 'speaking', null, 15000, 'speaking again');
  const m = await measureAudio(page, { source: 'remote', ms: 350 });
  log(`reply audio: ${m.freq.toFixed(1)} Hz at ${m.dbfs.toFixed(1)} dBFS`);
  check(Math.abs(m.freq - 660) <= 10, `reply tone at ${m.freq.toFixed(1)} Hz, want 660 +-10 Hz`);
  check(m.dbfs > -35, `reply level ${m.dbfs.toFixed(1)} dBFS: too close to silence`);
  await shot(page, 'pause-detection');
});

// ---------------------------------------------------------------------------------------
// flip through a lossy link: 20 ms one-way delay and 5% random loss each way (netem.sh's
// loss5, cmd/linkemu between the server's and Firefox's namespaces). The camera is
// badlink.mjs's 640x480@30 canvas with a frame counter (firefox-link.mjs); after a warm-up
// from ICE connected, a measured window: decoded fps (inbound-rtp framesDecoded), frozen time
// (inbound-rtp totalFreezesDuration; the same counted from the frames on screen is printed
// beside it), camera-to-screen lag (the counter read from the page's remote <video>),
// received height; the browser's and the server's loss-recovery counts, to say why.
// E2E_FF_LINK_WARMUP, E2E_FF_LINK_SECONDS: other lengths (the floor's frozen time scales).
const LINK_WARMUP = +(process.env.E2E_FF_LINK_WARMUP || 8);
const LINK_SECONDS = +(process.env.E2E_FF_LINK_SECONDS || 20);
const LINKEMU_PID = +(process.env.E2E_FF_LINKEMU_PID || 0); // SIGUSR2: linkemu snapshots its counters
const markLink = () => { if (LINKEMU_PID) { try { process.kill(LINKEMU_PID, 'SIGUSR2'); } catch (e) { log('linkemu mark: ' + e.message); } } };
const linkScenario = (profile) => scenario('flip-' + profile, { kind: 'flip', link: profile, init: linkCamera, initArg: () => !!process.env.E2E_FF_CAMERA_TIMER, timeout: (LINK_WARMUP + LINK_SECONDS + 35) * 1000 }, async ({ open }) => {
  const page = await open();
  await connect(page, 25000);
  check(await page.evaluate(() => window.__cam.gum.length === 1 && !!window.__cam.gum[0].video), 'the page asked for the camera');
  await page.evaluate(linkMeter);
  await sleep(LINK_WARMUP * 1000);
  markLink();
  await page.evaluate(() => window.__meter.mark('windowStart'));
  await sleep(LINK_SECONDS * 1000);
  await page.evaluate(() => window.__meter.mark('windowEnd'));
  markLink();
  await shot(page, 'flip-' + profile);
  const raw = JSON.parse(await page.evaluate(() => window.__meter.finish()));
  const s = summarizeLink(raw);
  writeFileSync(join(OUT, 'flip-' + profile + '.json'), JSON.stringify({ profile, warmup: LINK_WARMUP, seconds: LINK_SECONDS, summary: s, raw }));
  const v = s.server || {};
  log(`${LINK_SECONDS} s after ${LINK_WARMUP} s: ${s.fps} fps decoded (${s.shownFps} new frames/s on screen), frozen ${s.frozenS} s ` +
    `(${s.freezes} freezes; on screen ${s.screenFrozenS} s, ${s.screenFreezes}, longest ${s.longestFreezeMs} ms), lag p50 ${s.lagP50} p95 ${s.lagP95} max ${s.lagMaxMs} ms (> 400 ms for ${s.lagOver400S} s), height ${s.height}`);
  log(`Firefox receives: ${s.rxKbps} kbit/s, ${s.packetsLost} packets lost of ${s.packetsLost + s.packetsReceived}, sent ${s.nack} NACKs ${s.pli} PLIs, ` +
    `${s.keyFrames} key frames, jitter buffer ${s.jitterBufferMs} ms, rtt ${s.rttMs} ms`);
  log(`Firefox sends: ${s.sentFps} fps ${s.sentHeight}p ${s.txKbps} kbit/s (got ${s.txNack} NACKs ${s.txPli} PLIs); camera ${s.cameraFps} fps, ` +
    `read ${s.framesCounted} new in the window (${s.undecodable} unreadable, ${s.repeated} repeats in all)`);
  log(`server: ${v.fpsIn} fps in / ${v.fpsOut} out, estimate ${v.bweKbps} kbit/s, target ${v.targetKbps} kbit/s at ${v.heightOut}p ${v.fpsTarget} fps, ` +
    `NACKs ${v.nacksSent} and key-frame requests ${v.keyFramesRequested} to Firefox; key-frame requests ${v.keyFrameRequests} from it, ${v.keyFramesOut} key frames out, ${v.framesDropped} frames skipped`);
  check(s.framesCounted > 0, 'frame counters read from the screen');
  if (profile === 'loss5') checkLoss5(s);
});
// loss5 in the default set; E2E_FF_LINKS=perfect,jitter,... adds other netem.sh profiles
// (flip-<profile>, measured and printed, not asserted).
//
// The targets for every link are >= 25 fps, <= 1 s frozen and a lag p95 <= 400 ms
// over the 20 s. Firefox through loss5 does not meet them reliably (11 runs here, 2 cores:
// 17.9-27.3 fps, median 24.7; frozen 1.2-6.1 s, median 2.6; lag p95 336-515 ms, median 386;
// always 480p; Chromium through the same link and server: 25.5 fps, 1.4 s, 328 ms). What costs
// the frames is mostly the way up: the server's receive path gives up on 5 to 19 of Firefox's
// frames per window (a packet and its retransmission both lost) and asks for a key frame
// (Chromium, one run: 5), and the handler gets no frames until that key frame is complete (Firefox
// sends 2.2-3.4 Mbit/s here, Chromium 1.7, so its frames and key frames are more packets, each
// lost at 5%): 300-1000 ms holes, 10-30 frames, on screen. Besides, the server skips 1-3
// frames a second to hold its rate, and Firefox's jitter buffer holds 160-260 ms (35 ms on a
// perfect link), most of the lag. So the targets are printed, met or by how much missed,
// and the assertion is a regression floor under the worst run seen, far above what the
// server did before its loss recovery (Chromium then: 9.5 fps, 9.4 s frozen, lag p95 1.6 s).
const LOSS5_TARGETS = { fps: 25, frozenS: 1, lagP95: 400 };
const LOSS5_FLOOR = { fps: 14, frozenS: 8, lagP95: 800, height: 360 };
function checkLoss5(s) {
  const t = LOSS5_TARGETS;
  const miss = [];
  if (s.fps < t.fps) miss.push(`fps ${s.fps} < ${t.fps} by ${(t.fps - s.fps).toFixed(1)}`);
  if (s.frozenS > t.frozenS) miss.push(`frozen ${s.frozenS} s > ${t.frozenS} by ${(s.frozenS - t.frozenS).toFixed(2)} s`);
  if (s.lagP95 == null || s.lagP95 > t.lagP95) miss.push(`lag p95 ${s.lagP95} ms > ${t.lagP95} by ${s.lagP95 - t.lagP95} ms`);
  log(`issue targets (>= ${t.fps} fps, <= ${t.frozenS} s frozen, lag p95 <= ${t.lagP95} ms): ${miss.length ? 'missed: ' + miss.join('; ') : 'met'}`);
  // A canvas camera that could not keep its 30 fps means a starved machine (another job on
  // the 2 cores: seen once, 16 fps drawn, 7 decoded), not a slow server: say so.
  const load = loadavg().map((x) => x.toFixed(1)).join(' ');
  check(s.cameraFps >= 26, `the canvas camera drew only ${s.cameraFps} fps of 30 (load average ${load}): the machine is too busy for this measurement`);
  const f = LOSS5_FLOOR;
  check(s.fps >= f.fps, `decoded ${s.fps} fps through loss5, under the floor of ${f.fps}`);
  const frozenMax = f.frozenS * LINK_SECONDS / 20;
  check(s.frozenS <= frozenMax, `frozen ${s.frozenS} s of ${LINK_SECONDS} through loss5, over the floor of ${frozenMax} s`);
  check(s.lagP95 != null && s.lagP95 <= f.lagP95, `lag p95 ${s.lagP95} ms through loss5, over the floor of ${f.lagP95} ms`);
  check(s.height >= f.height, `received height ${s.height} through loss5, under ${f.height}`);
}
for (const p of new Set(['loss5', ...(process.env.E2E_FF_LINKS || '').split(',').filter(Boolean)])) linkScenario(p);

// ---------------------------------------------------------------------------------------
function withTimeout(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(what + ' timed out after ' + ms + ' ms')), ms); })])
    .finally(() => clearTimeout(t));
}

async function closeBrowser(browser) {
  const proc = browser.process();
  await withTimeout(browser.close(), 10000, 'browser.close').catch(() => {});
  if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); // the Firefox this run launched
}

let current = null; // the running scenario's browser
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { // firefox.sh was interrupted or timed out: kill Firefox, exit
    console.log(`e2e firefox: ${sig}, stopping`);
    const proc = current && current.process();
    if (proc && proc.exitCode === null) proc.kill('SIGKILL'); // the Firefox this run launched
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

async function runScenario(sc) {
  const { kind, timeout = 45000, init, initArg } = sc.opts;
  const browser = current = await launchFirefox();
  if (!runScenario.version) log('browser: ' + (runScenario.version = await browser.version()));
  const pages = [];
  const url = BASE + '/' + kind + '/';
  const open = async () => {
    const p = await newPage(browser, url);
    pages.push(p);
    if (init) await p.evaluateOnNewDocument(init, initArg ? initArg() : undefined);
    await p.goto(url);
    return p;
  };
  try {
    await withTimeout(sc.fn({ open, browser }), timeout, 'scenario');
  } catch (e) {
    for (const [i, p] of pages.entries()) {
      await withTimeout(p.screenshot({ path: join(OUT, `fail-${sc.name}-${i}.png`) }), 5000, 'screenshot').catch(() => {});
      if (p.consoleLog.length) console.log('    console of page', i, ':\n      ' + p.consoleLog.slice(-15).join('\n      '));
    }
    throw e;
  } finally {
    // Press Stop on every page (as a user would): the server must free the session at once.
    for (const p of pages) await withTimeout(p.evaluate(() => window.__fastrtc && window.__fastrtc.stop()), 5000, 'stop').catch(() => {});
    await closeBrowser(browser);
  }
  const ms = await expectServerClean(BASE, kind);
  log(`server freed the sessions and codecs ${ms} ms after Stop`);
}

const linkOf = (sc) => sc.opts.link || '-';

/** The results table (results: {name, link, ok, ms, err}). */
function printSummary(results, title) {
  console.log('\n' + title + ':');
  for (const r of results) {
    console.log(`  ${r.ok ? 'ok  ' : 'FAIL'} ${r.name.padEnd(16)} ${(r.ms / 1000).toFixed(1).padStart(5)} s${r.link !== '-' ? '  (link ' + r.link + ')' : ''}${r.ok ? '' : '  ' + r.err}`);
  }
}

async function main() {
  if (argv.includes('--summary')) { // firefox.sh: the table over its passes
    const file = argv[argv.indexOf('--summary') + 1];
    let results = [];
    try { results = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)); } catch (e) { /* none */ }
    printSummary(results, 'firefox suite summary (all passes)');
    const passed = results.filter((r) => r.ok).length;
    console.log(`e2e firefox: ${passed} passed, ${results.length - passed} failed`);
    process.exitCode = results.length && passed === results.length ? 0 : 1;
    return;
  }
  const unknown = (only || []).filter((n) => !scenarios.some((sc) => sc.name === n));
  if (unknown.length) throw new Error(`unknown scenario ${unknown.join(', ')} (known: ${scenarios.map((sc) => sc.name).join(', ')})`);
  if (argv.includes('--list')) {
    for (const sc of scenarios) if (!only || only.includes(sc.name)) console.log(sc.name + ' ' + linkOf(sc));
    return;
  }
  const selected = scenarios.filter((sc) => (!only || only.includes(sc.name)) && linkOf(sc) === (link || '-'));
  if (!link) for (const f of readdirSync(OUT)) if (/^fail-.*\.png$/.test(f)) unlinkSync(join(OUT, f));
  console.log(`e2e firefox: server ${BASE}${link ? ' through link ' + link : ''}, ${FIREFOX}, puppeteer-core over WebDriver BiDi`);
  const results = [];
  const t0 = Date.now();
  for (const sc of selected) {
    const t = Date.now();
    console.log(`--- ${sc.name}`);
    let r;
    try {
      await runScenario(sc);
      r = { name: sc.name, link: linkOf(sc), ok: true, ms: Date.now() - t };
      console.log(`ok   ${sc.name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    } catch (e) {
      r = { name: sc.name, link: linkOf(sc), ok: false, ms: Date.now() - t, err: e.message };
      console.log(`FAIL ${sc.name} (${((Date.now() - t) / 1000).toFixed(1)} s): ${e.message}`);
    }
    results.push(r);
    if (process.env.E2E_FF_RESULTS) appendFileSync(process.env.E2E_FF_RESULTS, JSON.stringify(r) + '\n');
  }
  const passed = results.filter((r) => r.ok).length, failed = results.length - passed;
  printSummary(results, 'firefox suite summary' + (link ? ' (link ' + link + ')' : ''));
  console.log(`  total ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshots and server log: ${OUT}`);
  console.log(`e2e firefox: ${passed} passed, ${failed} failed`);
  process.exitCode = failed || !results.length ? 1 : 0;
}

main().catch((e) => { console.error('e2e firefox:', e); process.exitCode = 1; });
