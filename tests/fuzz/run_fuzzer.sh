#!/usr/bin/env bash
# run_fuzzer.sh — run one nr libFuzzer target for a bounded time on a copy of its seeds.
#
#   run_fuzzer.sh FUZZER SEED_DIR SECONDS [CORPUS_DIR [ARTIFACT_DIR]]
#
# The fuzzer starts from SEED_DIR copied into CORPUS_DIR (default: a temporary directory,
# removed at the end; scripts/fuzz.sh passes a lasting one so that long runs build on each
# other), also runs the past crashes in tests/fuzz/regressions/<name>, uses
# tests/fuzz/<name>.dict when there is one, and stops after SECONDS. Limits: 10 s
# per input (a slower input is a hang: a bug), 2 GB of memory (one allocation above that is
# a bug too: readers must check sizes before they allocate). Prints the number of executions.
# Exit status 0 when the fuzzer found nothing; otherwise 1, with the crashing inputs copied to
# ARTIFACT_DIR (default: ./fuzz-artifacts/<name>) and their paths printed: each becomes a
# regression test in tests/test_fuzz_regressions.cpp and gets fixed.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: run_fuzzer.sh FUZZER SEED_DIR SECONDS [CORPUS_DIR [ARTIFACT_DIR]]" >&2
  exit 2
fi
fuzzer=$1 seeds=$2 seconds=$3
name=$(basename "$fuzzer")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dict="$here/${name#fuzz_}.dict"
artifacts=${5:-$PWD/fuzz-artifacts/$name}

work=$(mktemp -d "${TMPDIR:-/tmp}/nr-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
corpus=${4:-$work/corpus}
mkdir -p "$corpus" "$work/artifacts"
cp "$seeds"/* "$corpus"/

args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
      -artifact_prefix="$work/artifacts/")
[[ -f $dict ]] && args+=(-dict="$dict")
rc=0
# Past crashes (tests/fuzz/regressions/<name>) run first, as read-only extra inputs: libFuzzer
# adds what it finds to the first directory only.
regressions="$here/regressions/${name#fuzz_}"
inputs=("$corpus")
[[ -d $regressions ]] && inputs+=("$regressions")
"$fuzzer" "${args[@]}" "${inputs[@]}" >"$work/log" 2>&1 || rc=$?

runs=$(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$work/log" | awk '{print $2}' | tail -n 1 || true)
found=$(find "$work/artifacts" -type f | wc -l)
if [[ $rc -eq 0 && $found -eq 0 ]]; then
  echo "$name: ${runs:-?} executions in ${seconds} s, $(find "$corpus" -type f | wc -l) corpus inputs, no failure"
  exit 0
fi
tail -n 60 "$work/log"
echo "$name: FAILED (status $rc) after ${runs:-?} executions; $found input(s) saved" >&2
mkdir -p "$artifacts"
for f in "$work/artifacts"/*; do
  [[ -f $f ]] || continue
  cp "$f" "$artifacts"/
  echo "  $artifacts/$(basename "$f")   (replay: $fuzzer $artifacts/$(basename "$f"))" >&2
done
exit 1
