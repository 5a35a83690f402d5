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

# --- CUDA kernels (src/TaH.Kernels/Cuda): NVRTC compiles every kernel to PTX in the tests, no GPU
# needed. Debian ships it in non-free (libnvrtc11.2, CUDA 11.8, knows sm_90; ~50 MB), so that
# component is enabled first. Without NVRTC the compile tests skip and say why.
if ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  if [ -f /etc/debian_version ] && command -v apt-get >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing libnvrtc11.2 from Debian non-free (compiles the CUDA kernels to PTX in the tests)"
    for src in /etc/apt/sources.list.d/*.sources; do
      [ -f "$src" ] && $sudo sed -i -E '/^Components:/ { / non-free( |$)/! s/$/ contrib non-free/ }' "$src"
    done
    if [ -f /etc/apt/sources.list ]; then
      $sudo sed -i -E '/^deb .* main/ { / non-free( |$)/! s/$/ contrib non-free/ }' /etc/apt/sources.list
    fi
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libnvrtc11.2 >/dev/null; } \
      || echo "warning: libnvrtc11.2 could not be installed; the CUDA kernel compile tests will be skipped" >&2
  else
    echo "note: no libnvrtc on this machine; the CUDA kernel compile tests will be skipped" >&2
  fi
fi

dotnet build TaH.sln -c Release -nologo -v quiet -clp:ErrorsOnly
