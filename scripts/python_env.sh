#!/usr/bin/env bash
# python_env.sh — creates (once) the Python environment of the independent references and
# prints its python's path: torch, transformers, peft, gguf, tokenizers from PyPI in a virtual
# environment under nr's cache (PyTorch is a few GB: it is made once and reused).
#
# Exit status 3 (and a message on stderr) when the package registry cannot be reached: callers
# skip the reference checks with that message instead of failing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cache_dir.sh"

venv="$(nr_cache_dir)/venv"
stamp="$venv/.nr-complete-1"
packages=(torch transformers peft gguf tokenizers safetensors numpy sentencepiece)
if [[ -f $stamp ]]; then echo "$venv/bin/python"; exit 0; fi

py=$(command -v python3 || true)
[[ -n $py ]] || { echo "python_env.sh: python3 not found" >&2; exit 1; }
mkdir -p "$(nr_cache_dir)"
if [[ ! -x $venv/bin/python ]]; then
  echo "python_env.sh: creating $venv" >&2
  "$py" -m venv "$venv" >&2 || { rm -rf "$venv"; echo "python_env.sh: python3 -m venv failed (apt-get install python3-venv?)" >&2; exit 1; }
fi
echo "python_env.sh: installing ${packages[*]} from PyPI (once; a few GB)" >&2
if ! "$venv/bin/python" -m pip install --quiet "${packages[@]}" >&2; then
  if ! "$venv/bin/python" -m pip download --quiet --no-deps -d "$(mktemp -d)" gguf >/dev/null 2>&1; then
    echo "python_env.sh: the package registry is unreachable; reference checks are skipped" >&2
    exit 3
  fi
  echo "python_env.sh: pip install failed" >&2; exit 1
fi
touch "$stamp"
echo "$venv/bin/python"
