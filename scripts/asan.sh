#!/usr/bin/env bash
# Builds the addon with AddressSanitizer and UndefinedBehaviorSanitizer into
# a separate folder (default /tmp/usam-asan; build/ is left alone) and runs
# the test suite on it, with the sanitizer runtimes preloaded into Node.
# Leak detection is off: Node and V8 keep memory to the end by design, and
# the library's own leaks are counted by test/integration/leaks.test.ts instead.
# The package, PyTorch-twin and Chromium tests are left out (they start
# other programs that would inherit the preload).
#   scripts/asan.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/usam-asan}
torch_dir=$(node -e "import('./lib/native/libtorch.mjs').then(m => { const t = m.findLibtorch(process.env).found; if (!t) process.exit(1); console.log(t.torchDir); })")
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
# cmake-js sets CMAKE_CXX_FLAGS itself: configure through it, then add the flags and build with CMake
node node_modules/cmake-js/bin/cmake-js configure --directory . --out "$out" \
  "--CDTorch_DIR=$torch_dir" --CDUSAM_PACKAGE_VERSION=0.0.0-asan --CDUSAM_PREBUILD=OFF \
  "--CDCMAKE_SHARED_LINKER_FLAGS=-fsanitize=address,undefined" >/dev/null
cmake -S . -B "$out" "-DCMAKE_CXX_FLAGS=-DBUILDING_NODE_EXTENSION $flags" >/dev/null
cmake --build "$out" --parallel "$(nproc)"
[ "$(nm -D "$out/Release/usam.node" | grep -c __asan_report)" -gt 0 ] || { echo "asan.sh: the build is not instrumented" >&2; exit 1; }
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
USAM_ADDON="$out/Release/usam.node" npx vitest run \
  --exclude test/integration/package.test.ts --exclude test/numerics/pytorch-twin.test.ts --exclude test/integration/report-chromium.test.ts
