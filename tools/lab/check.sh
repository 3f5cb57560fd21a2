#!/bin/bash
# make check: set the machine up (idempotent), then run every test.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
"$here/setup.sh"
exec python3 "$here/check.py"
