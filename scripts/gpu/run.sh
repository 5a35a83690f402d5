#!/usr/bin/env bash
# Prepares a GPU run: packs everything into .gpu/ of the checkout that the device tool sends
# (pass it as the first argument when that is not this repository), keeps .gpu/ out of git,
# and prints the command to give the device tool, which runs scripts/gpu/remote.sh there and
# brings back $OUT/report.md with the logs and JSON results.
set -euo pipefail
cd "$(dirname "$0")/../.."
checkout=${1:-$(pwd)}
exclude="$(git -C "$checkout" rev-parse --git-common-dir)/info/exclude"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
scripts/gpu/pack.sh "$checkout/.gpu"
echo
echo "device tool: run with carry [\".gpu\"] and command:"
echo "  bash .gpu/remote.sh all"
