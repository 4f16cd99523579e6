#!/usr/bin/env bash
# The GPU check of universal-sam, in one go on a machine with an NVIDIA GPU
# and a CUDA build of PyTorch (its LibTorch 2.x is what the addon links).
#
#   scripts/gpu-check.sh pack            (here) gpu-carry.tar.xz: node, node_modules, dist
#   scripts/gpu-check.sh run [OUT_DIR]   (there) build the CUDA flavour, run the CUDA
#                                        tests, benchmark ResNet-18 (steps, HVP/grad), write OUT_DIR/summary.md
#
# The GPU machine needs python3 with a CUDA torch, cmake and a C++ compiler;
# node comes in the archive. Everything is written under OUT_DIR (default
# $OUT, else ./gpu-check-out).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}

if [ "$mode" = pack ]; then
  npx tsc -p tsconfig.build.json
  stage=$(mktemp -d)
  mkdir -p "$stage/bin"
  cp "$(command -v node)" "$stage/bin/node"
  tar -C . --exclude=node_modules/typescript --exclude=node_modules/.cache -cf "$stage/tree.tar" node_modules dist
  # Gloo's headers (Debian's libgloo-dev; c10d needs them and LibTorch ships none) for the data-parallel backends
  if [ -d /usr/include/gloo ]; then mkdir -p "$stage/include" && cp -r /usr/include/gloo "$stage/include/"; fi
  tar -C "$stage" -cJf gpu-carry.tar.xz bin tree.tar $( [ -d "$stage/include" ] && echo include )
  rm -rf "$stage"
  echo "gpu-check: wrote gpu-carry.tar.xz ($(du -h gpu-carry.tar.xz | cut -f1)); carry it with the checkout and run: bash scripts/gpu-check.sh run"
  exit 0
fi
[ "$mode" = run ] || { echo "usage: scripts/gpu-check.sh pack | run [OUT_DIR]" >&2; exit 2; }

out=${2:-${OUT:-gpu-check-out}}
mkdir -p "$out"
summary="$out/summary.md"
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }

python=${PYTHON:-python3}
if ! prefix=$("$python" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.utils.cmake_prefix_path)' 2>"$out/torch.err"); then
  say "gpu-check: needs python3 with a CUDA torch and a visible GPU: $(tail -1 "$out/torch.err")"
  exit 1
fi
# only now, on a machine that can run the check, unpack node and node_modules
if [ -f gpu-carry.tar.xz ]; then
  tmp=$(mktemp -d)
  tar -C "$tmp" -xJf gpu-carry.tar.xz
  tar -xf "$tmp/tree.tar"
  export PATH="$tmp/bin:$PATH"
  [ -d "$tmp/include" ] && export CMAKE_INCLUDE_PATH="$tmp/include${CMAKE_INCLUDE_PATH:+:$CMAKE_INCLUDE_PATH}"
fi
command -v node >/dev/null || { say "gpu-check: no node (run 'scripts/gpu-check.sh pack' where node is, and carry gpu-carry.tar.xz)"; exit 1; }

torch_version=$("$python" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))')
say "# universal-sam GPU check"
say ""
say "- machine: $(nproc) cores; torch/CUDA/GPU: $torch_version"

# 1. the CUDA flavour, built against the Python torch's LibTorch
start=$(date +%s)
if ! Torch_DIR="$prefix/Torch" node scripts/install.mjs --force-source > "$out/build.log" 2>&1; then
  say "- build: FAILED (see build.log)"; tail -30 "$out/build.log"; exit 1
fi
flavour=$(node -e "const v=require('./build/Release/usam.node').versions(); console.log(v.flavour + ' ' + v.torch + ' cuda=' + v.cudaAvailable + ' devices=' + v.cudaDeviceCount)")
say "- build: $(( $(date +%s) - start )) s, addon: $flavour"
say "- usam version: $(node scripts/usam.mjs version | paste -sd ';' -)"

# 2. the CUDA tests (and the whole suite: they must agree with the CPU)
set +e
USAM_REQUIRE_CUDA=1 node node_modules/vitest/vitest.mjs run test/integration/cuda.test.ts > "$out/cuda-tests.txt" 2>&1
cuda_rc=$?
set -e
say "- CUDA tests: $(grep -E 'Tests +[0-9]' "$out/cuda-tests.txt" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | xargs) (exit $cuda_rc)"

# 3. ResNet-18 (CIFAR shape, batch 128): SAM and Frob-SAM steps, ours vs PyTorch on the same card
say ""
say "| optimizer | ours ms/step | PyTorch ms/step | ours/PyTorch | ours fwd-bwd ms | ours/((n+1)·fwd-bwd) |"
say "|---|---|---|---|---|---|"
node scripts/run-ts.mjs scripts/bench/steps.ts --json --models resnet18 --optimizers sgd,sam,frob-sam --device cuda --rounds 3 --steps 10 > "$out/bench.jsonl" 2> "$out/bench.err" || true
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse).filter((r) => r.optimizer);
  for (const r of rows) console.log(`| ${r.optimizer} | ${r.medianMs.toFixed(2)} | ${r.pytorchMs.toFixed(2)} | ${r.oursOverPytorch.toFixed(3)} | ${r.forwardBackwardMs.toFixed(2)} | ${r.oursOverPasses.toFixed(3)} |`);
' "$out/bench.jsonl" | tee -a "$summary"
[ -s "$out/bench.jsonl" ] || say "(benchmark failed: see bench.err)"

# 3b. Mixed precision on the card: fp32, bf16 and fp16 (loss-scaled) steps in one alternating run, ours vs PyTorch's autocast (+ GradScaler's 2^16 scale for fp16)
say ""
say "| precision | optimizer | ours ms/step | PyTorch ms/step | ours/PyTorch | ours ÷ fp32 | PyTorch ÷ fp32 |"
say "|---|---|---|---|---|---|---|"
node scripts/run-ts.mjs scripts/bench/steps.ts --json --models resnet18 --optimizers sgd,sam --device cuda --rounds 2 --steps 10 --precision fp32,bf16,fp16 > "$out/bench-precision.jsonl" 2> "$out/bench-precision.err" || true
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse).filter((r) => r.optimizer);
  for (const r of rows) {
    const f = rows.find((q) => q.optimizer === r.optimizer && q.precision === "fp32");
    console.log(`| ${r.precision} | ${r.optimizer} | ${r.medianMs.toFixed(2)} | ${r.pytorchMs.toFixed(2)} | ${r.oursOverPytorch.toFixed(3)} | ${f ? (r.medianMs / f.medianMs).toFixed(3) : "–"} | ${f ? (r.pytorchMs / f.pytorchMs).toFixed(3) : "–"} |`);
  }
' "$out/bench-precision.jsonl" | tee -a "$summary"
[ -s "$out/bench-precision.jsonl" ] || say "(precision benchmark failed: see bench-precision.err)"

# 4. ResNet-18 HVP over gradient on the card (forward-over-reverse and double backward)
say ""
say "| model | grad ms | HVP ms | HVP/grad | double-backward/grad |"
say "|---|---|---|---|---|"
node scripts/run-ts.mjs scripts/bench/hessian.ts --json --timing-only --models resnet18 --device cuda > "$out/hessian.jsonl" 2> "$out/hessian.err" || true
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse);
  for (const r of rows) console.log(`| ${r.model} | ${r.gradMs.toFixed(2)} | ${r.hvpMs.toFixed(2)} | ${r.hvpOverGrad.toFixed(3)} | ${r.doubleBackwardOverGrad.toFixed(3)} |`);
' "$out/hessian.jsonl" | tee -a "$summary"
[ -s "$out/hessian.jsonl" ] || say "(HVP benchmark failed: see hessian.err)"
say ""
say "Raw: build.log, cuda-tests.txt, bench.jsonl, bench-bf16.jsonl, bench-fp16.jsonl, hessian.jsonl."
exit $cuda_rc
