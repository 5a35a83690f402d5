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

# --- What the deployment tests need (tests/TaH.Deploy.Tests) ------------------------------------
# A real Prometheus server and promtool (Debian's prometheus), the Compose validator (Debian's
# docker-compose: `docker-compose config` needs no Docker engine) and curl (the image's health
# check command). No recommended extras: the tests start Prometheus themselves, on loopback.
deploy_missing=()
command -v prometheus >/dev/null || deploy_missing+=(prometheus)
command -v docker-compose >/dev/null || deploy_missing+=(docker-compose)
command -v curl >/dev/null || deploy_missing+=(curl)
if [ ${#deploy_missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${deploy_missing[*]} (for the deployment tests)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${deploy_missing[@]}" >/dev/null
fi
# ------------------------------------------------------------------------------------------------

dotnet test TaH.sln -c Release --no-build -nologo "$@"
