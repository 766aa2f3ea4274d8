#!/usr/bin/env bash
# fuzz.sh — longer fuzzing runs than `ctest --preset fuzz` (15 s per target).
#
#   scripts/fuzz.sh [SECONDS [TARGET...]]      default: 300 s for every target, one after another
#
# Configures and builds the 'fuzz' preset (clang++, -fsanitize=fuzzer,address,undefined, into
# build-fuzz/), then runs each target (safetensors, config_json, text, ...) for SECONDS. The
# corpus grows across runs in build-fuzz/corpus/<target> (seeded from tests/fuzz/seeds/<target>);
# crashing inputs land in build-fuzz/fuzz-artifacts/<target>. Each failure is a bug: turn the
# input into a regression test (tests/test_fuzz_regressions.cpp) and fix the reader.
# The last line is "<N> targets passed, <M> failed"; the exit status is non-zero when M > 0.
#
# Environment: NR_JOBS (build jobs, default 1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-300}
shift || true
jobs=${NR_JOBS:-1}

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j"$jobs"

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  targets=()
  for f in build-fuzz/bin/fuzz_*; do
    [[ -x $f ]] || continue
    name=${f##*/fuzz_}
    [[ -d tests/fuzz/seeds/$name ]] && targets+=("$name")
  done
fi

passed=0
failed=0
for name in "${targets[@]}"; do
  if tests/fuzz/run_fuzzer.sh "build-fuzz/bin/fuzz_$name" "tests/fuzz/seeds/$name" "$seconds" \
       "build-fuzz/corpus/$name" "build-fuzz/fuzz-artifacts/$name"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
echo "$passed targets passed, $failed failed"
[[ $failed -eq 0 ]]
