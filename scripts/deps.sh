#!/usr/bin/env bash
# deps.sh — install the Debian/Ubuntu packages nr needs, only those that are missing.
# Idempotent and silent when everything is already installed.
set -euo pipefail

packages=(
  build-essential cmake
  libeigen3-dev libopenblas-dev libdnnl-dev libpcre2-dev libfmt-dev nlohmann-json3-dev
  libcli11-dev catch2 libbenchmark-dev
  python3-torch python3-numpy
  clang libomp-dev   # clang++ build (scripts/test.sh with NR_TEST_CLANG=1); libomp: OpenMP for clang
  libclang-rt-dev    # libFuzzer and the sanitizer runtimes for clang (fuzz preset, scripts/fuzz.sh)
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps.sh: not a Debian-based system; please install the equivalents of: ${packages[*]}" >&2
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps.sh: installing missing packages: ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "deps.sh: need root or sudo to install packages" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# Wait (rather than fail) if another apt/dpkg holds the lock.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends "${missing[@]}"
