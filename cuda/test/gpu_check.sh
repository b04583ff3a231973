#!/usr/bin/env bash
# Everything the CUDA backend needs checked on a GPU, in one device call (run from the repository
# root; about 8 minutes on an H100):
#   1. build: the C API library and the kernel check with plain CMake (nvcc, no Node needed), and,
#      when `node` is on PATH, the N-API addon through scripts/build-cuda.cjs;
#   2. the kernel check against float64, then compute-sanitizer memcheck (with --leak-check full:
#      the full report is kept) and racecheck on its quick run;
#   3. with node: the CUDA test files on the device (FUSEDCE_CUDA_BINARY points at this build):
#      the cross-entropy suite, the options suite, the soft family, binary CE and temperature, the
#      device-resident loss and streams, the device-tensor API;
#   4. the SASS load/store widths (16-byte loads where expected);
#   5. the benchmarks, with PyTorch on the same buffers: bench/cross_entropy_cuda.bench.py (plain
#      CE against eager and torch.compile) and bench/loss_family_cuda.bench.py (each option against
#      the plain kernel, soft CE / KL / JSD / entropy against their floor, binary CE, one-row latency).
# Usage: cuda/test/gpu_check.sh OUT_DIR [BUILD_DIR]   (BUILD_DIR default cuda/build-gpu)
# Everything goes to OUT_DIR (device.txt, build.txt, kernel_check.txt, memcheck.txt, racecheck.txt,
# vitest.txt, sass.txt, bench.json/.txt, family.json/.txt); a summary table is printed last.
set -uo pipefail
O=${1:?usage: cuda/test/gpu_check.sh OUT_DIR [BUILD_DIR]}
B=${2:-cuda/build-gpu}
mkdir -p "$O"
SHA=${FUSEDCE_GIT_SHA:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export FUSEDCE_GIT_SHA=$SHA
{ date -u +%FT%TZ; echo "git $SHA"; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv; } | tee "$O/device.txt"
status() { printf '%-28s %s\n' "$1" "$2" >> "$O/summary.txt"; }
: > "$O/summary.txt"

echo "== build"
{ cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release ${CMAKE_GENERATOR:+-G "$CMAKE_GENERATOR"} &&
  cmake --build "$B" --target fusedce_cuda_c fusedce_kernel_check -j 16; } > "$O/build.txt" 2>&1
rc=$?; status build "rc=$rc"; tail -2 "$O/build.txt"
K=$(find "$B" -name fusedce_kernel_check -type f | head -1)
LIB=$(find "$B" -name libfusedce_cuda.so -type f | head -1)
HAVE_NODE=0
if command -v node > /dev/null; then
  HAVE_NODE=1
  node scripts/build-cuda.cjs --out "$B/node" >> "$O/build.txt" 2>&1; status "build (addon)" "rc=$?"
fi

echo "== kernel check"; timeout 150 "$K" > "$O/kernel_check.txt" 2>&1; rc=$?; status "kernel check" "rc=$rc"; tail -3 "$O/kernel_check.txt"
echo "== memcheck"
timeout 200 compute-sanitizer --tool memcheck --leak-check full --report-api-errors all "$K" --quick > "$O/memcheck.txt" 2>&1
rc=$?; status memcheck "rc=$rc $(grep -cE 'Leaked|bytes leaked|ERROR SUMMARY' "$O/memcheck.txt") report lines"; grep -E "ERROR SUMMARY|LEAK SUMMARY|Leaked" "$O/memcheck.txt" | head -5
echo "== racecheck"; timeout 200 compute-sanitizer --tool racecheck "$K" --quick > "$O/racecheck.txt" 2>&1; status racecheck "rc=$?"; tail -2 "$O/racecheck.txt"

if [ "$HAVE_NODE" = 1 ]; then
  echo "== vitest on the device"
  FUSEDCE_CUDA_BINARY=$(find "$B/node" -name fusedce_cuda.node | head -1) timeout 300 npx vitest run \
    test/cross_entropy_cuda.test.ts test/cross_entropy_options_cuda.test.ts test/soft_family_cuda.test.ts \
    test/binary_cross_entropy_cuda.test.ts test/sequences_cuda.test.ts test/cuda_stream.test.ts test/cuda_api.test.ts > "$O/vitest.txt" 2>&1
  status vitest "rc=$? $(grep -E 'Tests ' "$O/vitest.txt" | sed 's/\x1b\[[0-9;]*m//g' | tail -1)"
else
  status vitest "skipped: no node on this machine"
fi

echo "== sass"; cuobjdump --dump-sass "$LIB" | grep -oE "(LDG|STG|LDS|STS)[A-Z0-9._]*" | sort | uniq -c > "$O/sass.txt"; cat "$O/sass.txt"

echo "== bench (plain)"
PYTHONUNBUFFERED=1 timeout "${BENCH_TIMEOUT:-300}" python3 bench/cross_entropy_cuda.bench.py --lib "$LIB" --json "$O/bench.json" ${BENCH_ARGS:-} > "$O/bench.txt" 2>&1
status "bench (plain)" "rc=$?"; tail -8 "$O/bench.txt"
echo "== bench (family)"
PYTHONUNBUFFERED=1 timeout "${FAMILY_TIMEOUT:-200}" python3 bench/loss_family_cuda.bench.py --lib "$LIB" --json "$O/family.json" > "$O/family.txt" 2>&1
status "bench (family)" "rc=$?"; tail -20 "$O/family.txt"

echo "== summary ($SHA)"; cat "$O/summary.txt"
