// Opens the built-in page of a video stream at the URL given as argument, starts a call and
// checks that it connects through a TURN relay (the selected candidate pair's local
// candidate is "relay") and that the server's video plays. Run by netns_test.go inside a
// client network namespace whose only way to the server is the TURN port. Exits non-zero on
// failure.
import { launch, newPage } from './lib.mjs';

const url = process.argv[2];
// The server is not on localhost: let the page use the (fake) camera over plain http.
const browser = await launch({ extraArgs: ['--unsafely-treat-insecure-origin-as-secure=' + new URL(url).origin] });
let ok = false;
try {
  const page = await newPage(browser, url);
  await page.click('[data-testid=start]');
  await page.waitForFunction(() => { const v = document.querySelector('#remote-video'); return v && v.videoWidth > 0 && v.currentTime > 0.5; }, null, { timeout: 20000 });
  const pair = await page.evaluate(async () => {
    const report = await window.__fastrtc.pc.getStats();
    let sel = null;
    report.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) sel = report.get(s.selectedCandidatePairId); });
    if (!sel) report.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') sel = s; });
    if (!sel) return null;
    const local = report.get(sel.localCandidateId), remote = report.get(sel.remoteCandidateId);
    return { local: local.candidateType, remote: remote.candidateType, address: remote.address, port: remote.port };
  });
  console.log('PAIR ' + JSON.stringify(pair));
  ok = pair && pair.local === 'relay';
} catch (e) {
  console.log('error: ' + e.message);
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    const st = await pages[0].evaluate(async () => {
      const a = window.__fastrtc, cands = [];
      if (a.pc) (await a.pc.getStats()).forEach((s) => { if (s.type.endsWith('candidate')) cands.push(s.type + ' ' + s.candidateType + ' ' + s.address + ':' + s.port + ' ' + s.protocol); });
      return { toasts: a.toasts, timing: a.timing, msg: document.body.innerText.slice(0, 400), state: a.state, error: a.error, ice: a.pc && a.pc.iceConnectionState, conf: a.pc && a.pc.getConfiguration().iceServers, cands };
    });
    console.log('state: ' + JSON.stringify(st));
  } catch (e2) { console.log('no state: ' + e2.message); }
} finally {
  await browser.close();
}
process.exit(ok ? 0 : 1);
