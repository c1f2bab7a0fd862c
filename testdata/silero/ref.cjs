// Reference speech probabilities from onnxruntime (test-only): runs the Silero VAD v5 ONNX
// model over a file of 16-bit little-endian mono PCM, window by window, with the previous
// window's tail as context and the LSTM state carried over, as Silero's own wrappers do.
// Usage: node ref.cjs MODEL RATE IN.pcm OUT.f32   (writes one float32 per window)
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, rateArg, input, output] = process.argv.slice(2);
  const rate = Number(rateArg);
  const win = rate === 16000 ? 512 : 256;
  const ctx = win / 8;
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const buf = fs.readFileSync(input);
  const pcm = new Int16Array(buf.buffer, buf.byteOffset, Math.floor(buf.length / 2));
  const n = Math.floor(pcm.length / win);
  const out = new Float32Array(n);
  let state = new ort.Tensor('float32', new Float32Array(2 * 128), [2, 1, 128]);
  const sr = new ort.Tensor('int64', BigInt64Array.from([BigInt(rate)]), []);
  const x = new Float32Array(ctx + win);
  for (let w = 0; w < n; w++) {
    x.copyWithin(0, win, win + ctx); // the last window's tail becomes the context
    for (let i = 0; i < win; i++) x[ctx + i] = pcm[w * win + i] / 32768;
    const r = await session.run({ input: new ort.Tensor('float32', x.slice(), [1, ctx + win]), state, sr });
    out[w] = r.output.data[0];
    state = r.stateN;
  }
  fs.writeFileSync(output, Buffer.from(out.buffer));
}
main().catch((e) => { console.error(e); process.exit(1); });
