#!/usr/bin/env bash
# On a machine with a GPU: the kernel check, compute-sanitizer memcheck and racecheck, the SASS
# load/store widths, then the GPU benchmark. Usage: cuda/test/gpu_check.sh BUILD_DIR OUT_DIR
#   BUILD_DIR holds fusedce_kernel_check and libfusedce_cuda.so (npm run build:cuda puts them in
#   cuda/build/Release); results go to OUT_DIR.
set -uo pipefail
B=$1; O=$2
mkdir -p "$O"
K="$B/fusedce_kernel_check"; [ -x "$K" ] || K="$B/kernel_check"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$O/device.txt"
echo "== kernel check"; timeout 120 "$K" 2>&1 | tee "$O/kernel_check.txt" | tail -3
echo "== memcheck"; timeout 150 compute-sanitizer --tool memcheck --leak-check full "$K" --quick > "$O/memcheck.txt" 2>&1; echo "rc=$?"; tail -3 "$O/memcheck.txt"
echo "== racecheck"; timeout 150 compute-sanitizer --tool racecheck "$K" --quick > "$O/racecheck.txt" 2>&1; echo "rc=$?"; tail -3 "$O/racecheck.txt"
echo "== sass"; cuobjdump --dump-sass "$B/libfusedce_cuda.so" | grep -oE "(LDG|STG|LDS|STS)[A-Z0-9._]*" | sort | uniq -c
echo "== bench"; PYTHONUNBUFFERED=1 timeout "${BENCH_TIMEOUT:-400}" python3 bench/cross_entropy_cuda.bench.py --lib "$B/libfusedce_cuda.so" --json "$O/bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$O/bench.txt"
