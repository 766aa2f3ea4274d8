#!/usr/bin/env bash
# demo.sh — build the release preset's `quickstart` example and run it.
# Extra arguments are passed to build/bin/quickstart.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target quickstart -j2
exec build/bin/quickstart "$@"
