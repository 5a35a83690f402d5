#!/usr/bin/env bash
# TorchSharp 0.107's native bridge (libLibTorchSharp.so) was built with GCC 13 and asks for one
# symbol of version GLIBCXX_3.4.32, std::ios_base_library_init(), which older libstdc++ builds
# (Debian 12: GCC 12) lack; loading then fails. Where that is the case, make the version need
# weak, unversion that one symbol, and supply it from a tiny shim the bridge itself depends on.
# Where libstdc++ is new enough (Ubuntu 24.04, the .NET container images) this does nothing.
#
# usage: fix-torchsharp-glibcxx.sh DIR   (DIR holds libLibTorchSharp.so; patched in place)
set -euo pipefail

dir=${1:?usage: $0 DIR}
bridge="$dir/libLibTorchSharp.so"
shim_name=libtah_glibcxx_shim.so
symbol=_ZSt21ios_base_library_initv
version=GLIBCXX_3.4.32

[ -f "$bridge" ] || exit 0
[ "$(uname -s)" = Linux ] || exit 0

libstdcxx=$(/sbin/ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')
if [ -n "$libstdcxx" ] && grep -q "$version" "$libstdcxx"; then
  exit 0 # the system library provides the version: nothing to fix
fi
if ! readelf -V -W "$bridge" | grep -q "Name: $version"; then
  exit 0 # this bridge does not need it
fi
if readelf -d -W "$bridge" | grep -q "\[$shim_name\]"; then
  exit 0 # already patched
fi

for tool in g++ patchelf readelf dd; do
  command -v "$tool" >/dev/null || {
    echo "error: TorchSharp needs $version, which $libstdcxx lacks; fixing it needs '$tool' (run scripts/setup.sh)" >&2
    exit 1
  }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo 'namespace std { void ios_base_library_init() {} }' > "$work/shim.cpp"
g++ -shared -fPIC -O2 -o "$work/$shim_name" "$work/shim.cpp"

# Patch a private copy so that a hard link into the NuGet cache is never written through.
cp "$bridge" "$work/bridge.so"
patchelf --clear-symbol-version "$symbol" "$work/bridge.so"
patchelf --add-needed "$shim_name" "$work/bridge.so"

# Set VER_FLG_WEAK (0x2) on the GLIBCXX_3.4.32 entry of .gnu.version_r (vna_flags is the 16-bit
# field 4 bytes into the Vernaux entry), so the loader no longer refuses the library.
section_offset=$(readelf -V -W "$work/bridge.so" | awk '/\.gnu\.version_r/ {getline; for (i = 1; i <= NF; i++) if ($i == "Offset:") print $(i + 1)}')
entry_offset=$(readelf -V -W "$work/bridge.so" | awk -v v="$version" '$3 == v && $2 == "Name:" {sub(":", "", $1); print $1}')
if [ -z "$section_offset" ] || [ -z "$entry_offset" ]; then
  echo "error: could not locate $version in .gnu.version_r of $bridge" >&2
  exit 1
fi
printf '\002\000' | dd of="$work/bridge.so" bs=1 seek=$((section_offset + entry_offset + 4)) conv=notrunc status=none

cp "$work/$shim_name" "$dir/$shim_name"
mv -f "$work/bridge.so" "$bridge"
echo "patched $bridge for $version (system libstdc++ lacks it)"
