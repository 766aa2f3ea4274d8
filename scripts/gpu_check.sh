#!/usr/bin/env bash
# gpu_check.sh — the prepared check for a machine with an NVIDIA GPU (docs/cuda.md), meant to run
# once, within 10 minutes, on a freshly lent machine:
#   1. configure + build the CUDA tests (release, sm_90 unless CUDAARCHS says otherwise);
#   2. run every CUDA test (each kernel against its CPU op, with the tolerances of docs/cuda.md);
#   3. compute-sanitizer memcheck over the kernel tests;
# and writes everything it measured into ${OUT:-gpu-check}/gpu_check.json (plus the logs).
# Exit status: 0 when every step passed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-gpu-check}
mkdir -p "$out"
jobs=${NR_JOBS:-$(nproc)}
declare -A status seconds

run_step() {  # run_step NAME COMMAND... : logs to $out/NAME.log, records status and time
  local name=$1; shift
  local t0=$SECONDS
  echo "==> $name" >&2
  "$@" >"$out/$name.log" 2>&1
  status[$name]=$?
  seconds[$name]=$((SECONDS - t0))
  tail -n 5 "$out/$name.log" >&2
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu.txt" 2>&1 || true
run_step deps scripts/deps.sh
run_step configure cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-O3 -march=native" \
  -DNR_BUILD_CUDA=ON -DNR_WARNINGS_AS_ERRORS=ON
run_step build cmake --build build-gpu --target test_cuda_ops -j"$jobs"
run_step cuda_tests ctest --test-dir build-gpu -L cuda --output-on-failure
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
if [[ -n $sanitizer ]]; then
  run_step memcheck "$sanitizer" --tool memcheck --error-exitcode 1 build-gpu/bin/test_cuda_ops
else
  status[memcheck]=127; seconds[memcheck]=0
fi

passed=$(grep -Eo '[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$out/cuda_tests.log" | tail -n 1)
skipped=$(grep -c 'Skipped' "$out/cuda_tests.log" || true)
{
  printf '{"gpu": "%s", "ctest": "%s", "skipped": %s, "steps": {' "$(head -n 1 "$out/gpu.txt")" "$passed" "${skipped:-0}"
  sep=""
  for s in deps configure build cuda_tests memcheck; do
    printf '%s"%s": {"status": %s, "seconds": %s}' "$sep" "$s" "${status[$s]:-null}" "${seconds[$s]:-null}"; sep=", "
  done
  printf '}}\n'
} >"$out/gpu_check.json"
cat "$out/gpu_check.json"
for s in deps configure build cuda_tests memcheck; do [[ ${status[$s]:-1} -eq 0 ]] || exit 1; done
