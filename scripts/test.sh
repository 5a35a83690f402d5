#!/usr/bin/env bash
# Builds everything on a fresh machine and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
dotnet test TaH.sln -c Release --no-build -nologo "$@"
