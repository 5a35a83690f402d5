#!/usr/bin/env bash
# Prepares a fresh machine and builds the solution (Release).
# Installs only what this machine lacks: patchelf and g++ are needed where the system libstdc++
# is older than TorchSharp's native bridge expects (see build/fix-torchsharp-glibcxx.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dotnet >/dev/null; then
  echo "error: the .NET 10 SDK is required (https://dot.net); 'dotnet' is not on PATH" >&2
  exit 1
fi

needs_glibcxx_fix() {
  local lib
  lib=$(/sbin/ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')
  [ -n "$lib" ] && ! grep -q GLIBCXX_3.4.32 "$lib"
}

missing=()
if needs_glibcxx_fix; then
  command -v patchelf >/dev/null || missing+=(patchelf)
  command -v g++ >/dev/null || missing+=(g++)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} (needed to load TorchSharp on this libstdc++)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

dotnet build TaH.sln -c Release -nologo -v quiet -clp:ErrorsOnly
