#!/usr/bin/env bash
# Builds everything on a fresh machine and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# --- What the tests need beyond the build -------------------------------------------------------
# The server's playground test drives Debian's headless Chromium over the DevTools protocol
# (no browser download: the package is the browser). TAH_CHROMIUM may point at another build.
if [ -z "${TAH_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing chromium (for the playground browser test)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
# ------------------------------------------------------------------------------------------------

dotnet test TaH.sln -c Release --no-build -nologo "$@"
