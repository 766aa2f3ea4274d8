#!/usr/bin/env bash
# demo.sh — the main job: reproduce the neutral-residues paper's Table 2 and Figure 1 at small
# scale, from a fresh clone, in under 20 minutes on 2 CPU cores.
#   1. missing Debian packages (scripts/deps.sh), then build nrlab (release preset)
#   2. the corpus (Debian man pages, info manuals, Debian Reference) into cache/corpus,
#      skipped when cache/corpus/manifest.json exists
#   3. nrlab reproduce table2 --preset quick: pretrain the nano backbone (cached in
#      runs/quick/backbone-en), run the eight extension runs (finetuning, LoRA, vanilla adapters,
#      neutral residues, each with p = 0 and p = 0.1), print the table and write
#      runs/quick/table2/{results.md,results.csv,results.json,figure1.svg,figure3.svg,curves.svg}
# Interrupted (Ctrl-C)? Run it again: finished runs are reused, the interrupted one resumes.
# Environment: NR_CORPUS (default cache/corpus), NR_RUNS (default runs), NR_THREADS (default
# all cores). Extra arguments go to `nrlab reproduce` (e.g. table8, --preset paper).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

corpus=${NR_CORPUS:-cache/corpus}
runs=${NR_RUNS:-runs}
start=$(date +%s)
elapsed() { local s=$(( $(date +%s) - start )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

echo "==> [demo $(elapsed)] dependencies and build (release preset, target nrlab)" >&2
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target nrlab -j2

if [[ -f $corpus/manifest.json ]]; then
  echo "==> [demo $(elapsed)] corpus: reusing $corpus" >&2
else
  echo "==> [demo $(elapsed)] corpus: building $corpus (Debian packages, about a minute)" >&2
  build/bin/nrlab corpus --out "$corpus" >/dev/null
fi

threads=()
[[ -n ${NR_THREADS:-} ]] && threads=(--threads "$NR_THREADS")
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(table2 --preset quick)
echo "==> [demo $(elapsed)] nrlab reproduce ${args[*]}" >&2
build/bin/nrlab reproduce "${args[@]}" --corpus "$corpus" --runs "$runs" "${threads[@]}"
echo "==> [demo $(elapsed)] done" >&2
