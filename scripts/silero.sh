#!/usr/bin/env bash
# Installs the Silero VAD v5 model (MIT; shipped in npm's @ricky0123/vad-web) and, for the test
# that checks our pure-Go network against it, onnxruntime-node, into testdata/silero/node_modules.
# --ignore-scripts: onnxruntime-node's CPU runtime is in its package; its install script only
# downloads GPU providers (from hosts this machine cannot reach). Prints the model's path.
set -euo pipefail
cd "$(dirname "$0")/../testdata/silero"
model=node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx
if [ ! -f "$model" ] || [ ! -d node_modules/onnxruntime-node ]; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
fi
echo "$PWD/$model"
