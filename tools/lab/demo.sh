#!/bin/bash
# make demo: set the machine up (idempotent), then show the balloon working.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
"$here/setup.sh"
exec python3 "$here/demo.py"
