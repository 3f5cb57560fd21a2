#!/bin/bash
# make bench: set the machine up (idempotent), then print benchmark figures.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
"$here/setup.sh"
exec python3 "$here/bench.py"
