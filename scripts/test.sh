#!/usr/bin/env bash
# test.sh — the whole check, in this order:
#   1. scripts/deps.sh (missing Debian packages only)
#   2. release preset (-O3 -march=native, -Werror): build + ctest, with the SmolLM2 reference
#      (scripts/fetch_model.sh, scripts/python_env.sh, tests/reference/smollm2_reference.py)
#      made first for tests/test_smollm2_parity.cpp (skipped without network)
#   3. debug preset (clang++, ASan + UBSan, -Werror): build + ctest
#                                                            skip with NR_SKIP_SANITIZERS=1
#   4. install the release build to a temp prefix; build + run examples/consumer against it
#   5. FetchContent: a generated project pulls nr from this checkout; build + run
#   6. clang-release preset (-Werror): build only            NR_TEST_CLANG=1 (off by default:
#      step 3 already compiles everything with clang++ and -Werror)
#   7. fuzz preset (clang++, libFuzzer + ASan + UBSan, fuzz targets only, -Werror): build +
#      ctest label "fuzz", each target NR_FUZZ_SECONDS (default 15) s   skip with NR_SKIP_FUZZ=1
#      (longer runs: scripts/fuzz.sh)
# The last line printed is "<N> passed, <M> failed": test cases summed over every ctest run,
# plus one failure for each step above that failed. Exit status is non-zero if M > 0.
#
# Environment: NR_JOBS (default 2), NR_SKIP_SANITIZERS, NR_TEST_CLANG, NR_SKIP_FUZZ,
# NR_FUZZ_SECONDS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

jobs=${NR_JOBS:-2}
skip_sanitizers=${NR_SKIP_SANITIZERS:-0}
test_clang=${NR_TEST_CLANG:-0}
skip_fuzz=${NR_SKIP_FUZZ:-0}
fuzz_seconds=${NR_FUZZ_SECONDS:-15}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nr-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

total_passed=0
total_failed=0
failed_steps=()

step() { printf '\n==> %s\n' "$*"; }

# fail <description>: record a failed step (counts as one failure).
fail() {
  echo "!!! FAILED: $1" >&2
  failed_steps+=("$1")
  total_failed=$((total_failed + 1))
}

# run_ctest <label> <ctest args...>: run ctest, add its "N tests failed out of M" to the totals.
run_ctest() {
  local label=$1; shift
  local log="$tmp/ctest-$label.log" rc=0 line passed failed total
  ctest "$@" 2>&1 | tee "$log" || rc=$?
  line=$(grep -Eo '[0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1 || true)
  if [[ -n $line ]]; then
    failed=$(awk '{print $1}' <<<"$line")
    total=$(awk '{print $NF}' <<<"$line")
    passed=$((total - failed))
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    if [[ $rc -ne 0 && $failed -eq 0 ]]; then fail "ctest ($label) exited with status $rc"; fi
  elif grep -q 'No tests were found' "$log"; then
    echo "(no tests registered for $label)"
  else
    fail "ctest ($label) did not run (status $rc)"
  fi
}

# build_preset <preset> <label> [extra configure args...]: configure + build (make -k).
# Returns non-zero (and records a failure) if either step fails.
build_preset() {
  local preset=$1 label=$2; shift 2
  if ! cmake --preset "$preset" "$@" >"$tmp/configure-$preset.log" 2>&1; then
    cat "$tmp/configure-$preset.log" >&2
    fail "$label configure"
    return 1
  fi
  if ! cmake --build --preset "$preset" -j"$jobs" -- -k; then
    fail "$label build"
    return 1
  fi
}

step "dependencies"
if ! scripts/deps.sh; then fail "scripts/deps.sh"; fi

# --- 2. release ---------------------------------------------------------------------------
step "release build (preset 'release', -Werror)"
release_configured=1
if ! build_preset release release -DNR_WARNINGS_AS_ERRORS=ON; then
  [[ -f build/CTestTestfile.cmake ]] || release_configured=0
fi
# The real-text corpus for tests/test_real_corpus.cpp (cached in cache/corpus; about a minute
# from Debian's mirrors). Without network the test is skipped with a message saying so.
corpus=${NR_CORPUS_DIR:-$root/cache/corpus}
if [[ -x build/bin/nrlab && ! -f $corpus/manifest.json ]]; then
  step "corpus for the real-text tests ($corpus)"
  build/bin/nrlab corpus --out "$corpus" >"$tmp/corpus.log" 2>&1 \
    || { echo "corpus could not be built (see below); test_real_corpus will be skipped"; tail -n 5 "$tmp/corpus.log"; }
fi
export NR_CORPUS_DIR=$corpus

# The real-model reference for tests/test_smollm2_parity.cpp: SmolLM2-135M's GGUF
# (scripts/fetch_model.sh) and transformers' own reading of it, made by
# tests/reference/smollm2_reference.py in the Python environment of scripts/python_env.sh
# (cached in <cache>/reference/smollm2; recomputed only when the script, the model or the test
# texts change). Without network the parity tests are skipped with a message saying so.
source scripts/cache_dir.sh
smollm2_ref="$(nr_cache_dir)/reference/smollm2"
step "SmolLM2 reference ($smollm2_ref)"
t_ref=$SECONDS
if smollm2_gguf=$(scripts/fetch_model.sh smollm2); then
  echo "model: $smollm2_gguf ($((SECONDS - t_ref)) s)"
  t_ref=$SECONDS
  py_rc=0
  ref_python=$(scripts/python_env.sh) || py_rc=$?
  if [[ $py_rc -eq 0 ]]; then
    echo "Python reference environment: $ref_python ($((SECONDS - t_ref)) s)"
    t_ref=$SECONDS
    if "$ref_python" tests/reference/smollm2_reference.py --model "$smollm2_gguf" --out "$smollm2_ref" \
         >"$tmp/smollm2-reference.log" 2>&1; then
      grep '^smollm2_reference:' "$tmp/smollm2-reference.log" | tail -n 3 || true
      echo "reference: $((SECONDS - t_ref)) s"
      export NR_SMOLLM2_GGUF=$smollm2_gguf NR_SMOLLM2_REFERENCE=$smollm2_ref/reference.json
    else
      tail -n 20 "$tmp/smollm2-reference.log" >&2
      fail "tests/reference/smollm2_reference.py"
    fi
  elif [[ $py_rc -eq 3 ]]; then
    echo "skipped: the package registry is unreachable, so there is no Python reference; test_smollm2_parity is skipped"
  else
    fail "scripts/python_env.sh (status $py_rc)"
  fi
else
  echo "skipped: SmolLM2's GGUF could not be fetched (see above); test_smollm2_parity is skipped"
fi

if [[ $release_configured -eq 1 ]]; then
  step "release tests"
  run_ctest release --preset release -j"$jobs" --timeout 900
fi
# A 135M-parameter model under ASan would take most of an hour: real-model tests run in release only.
unset NR_SMOLLM2_GGUF NR_SMOLLM2_REFERENCE

# --- 3. debug + sanitizers -----------------------------------------------------------------
if [[ $skip_sanitizers != 1 ]]; then
  # Exported before building: catch_discover_tests runs each test binary after linking it.
  export ASAN_OPTIONS=detect_leaks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  step "debug build (preset 'debug': clang++, ASan + UBSan, -Werror)"
  CC=clang CXX=clang++ build_preset debug debug -DNR_WARNINGS_AS_ERRORS=ON || true
  if [[ -f build-debug/CTestTestfile.cmake ]]; then
    step "debug tests (ASan + UBSan)"
    run_ctest debug --preset debug -j"$jobs" --timeout 1800
  fi
else
  step "debug/sanitizer build skipped (NR_SKIP_SANITIZERS=1)"
fi

# --- 4. installed package + find_package(nr) -------------------------------------------------
step "install + find_package(nr) consumer (examples/consumer)"
if [[ $release_configured -eq 1 ]] && cmake --install build --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1; then
  if cmake -S examples/consumer -B "$tmp/consumer" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$tmp/prefix" >"$tmp/consumer-configure.log" 2>&1 \
     && cmake --build "$tmp/consumer" -j"$jobs"; then
    if "$tmp/consumer/consumer"; then echo "consumer: OK"; else fail "installed consumer run"; fi
  else
    cat "$tmp/consumer-configure.log" >&2
    fail "installed consumer configure/build"
  fi
else
  [[ -f $tmp/install.log ]] && cat "$tmp/install.log" >&2
  fail "cmake --install"
fi

# --- 5. FetchContent -------------------------------------------------------------------------
step "FetchContent consumer"
mkdir -p "$tmp/fetch"
cat >"$tmp/fetch/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(nr_fetch_check LANGUAGES CXX)
include(FetchContent)
FetchContent_Declare(nr SOURCE_DIR "$root")
FetchContent_MakeAvailable(nr)
foreach(opt NR_BUILD_TESTS NR_BUILD_EXAMPLES NR_BUILD_BENCH)
  if(\${opt})
    message(FATAL_ERROR "\${opt} must default to OFF when nr is not the top-level project")
  endif()
endforeach()
add_executable(consumer "$root/examples/consumer/main.cpp")
target_link_libraries(consumer PRIVATE nr::nr)
CMAKE
if cmake -S "$tmp/fetch" -B "$tmp/fetch/build" -DCMAKE_BUILD_TYPE=Release \
      >"$tmp/fetch-configure.log" 2>&1 \
   && cmake --build "$tmp/fetch/build" -j"$jobs"; then
  if "$tmp/fetch/build/consumer"; then echo "FetchContent consumer: OK"; else fail "FetchContent consumer run"; fi
else
  cat "$tmp/fetch-configure.log" >&2
  fail "FetchContent consumer configure/build"
fi

# --- 6. clang++ (build only) -----------------------------------------------------------------
if [[ $test_clang == 1 ]]; then
  step "clang++ build (preset 'clang-release', -Werror, build only)"
  build_preset clang-release clang-release -DNR_WARNINGS_AS_ERRORS=ON || true
fi

# --- 7. libFuzzer targets (clang++) ----------------------------------------------------------
if [[ $skip_fuzz != 1 ]]; then
  step "fuzz build (preset 'fuzz': clang++, libFuzzer + ASan + UBSan, fuzz targets only, -Werror)"
  if CC=clang CXX=clang++ build_preset fuzz fuzz -DNR_WARNINGS_AS_ERRORS=ON -DNR_FUZZ_SECONDS="$fuzz_seconds"; then
    step "fuzz tests (${fuzz_seconds} s per target)"
    run_ctest fuzz --preset fuzz
  fi
else
  step "fuzz build skipped (NR_SKIP_FUZZ=1)"
fi

# --- summary ---------------------------------------------------------------------------------
echo
if [[ ${#failed_steps[@]} -gt 0 ]]; then
  printf 'failed steps:\n'; printf '  - %s\n' "${failed_steps[@]}"
fi
echo "$total_passed passed, $total_failed failed"
[[ $total_failed -eq 0 ]]
