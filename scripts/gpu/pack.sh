#!/usr/bin/env bash
# Packs what a GPU run needs into DEST (default: .gpu in the repository root, which the device
# tool carries): the .NET runtime (xz), the built `tah` app and the kernel test/bench program
# (managed files only: libtorch comes from the GPU machine's PyTorch), TorchSharp's native
# bridge as shipped (unpatched: the GPU machine's libstdc++ is new enough), the bridge's
# undefined symbols (to check against that libtorch), and the scripts under scripts/gpu.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
dest=${1:-$root/.gpu}
mkdir -p "$dest"

dotnet build TaH.sln -c Release -nologo -v quiet -clp:ErrorsOnly

copy_app() { # src-dir name
  local out="$dest/$2"
  rm -rf "$out" && mkdir -p "$out"
  # Managed files and configs; no deps.json (it lists the CPU libtorch files left behind).
  find "$1" -maxdepth 1 -type f \( -name '*.dll' -o -name '*.runtimeconfig.json' \) -exec cp {} "$out/" \;
  cp "$bridge" "$out/"
}
bridge=$(ls ~/.nuget/packages/torchsharp/*/runtimes/linux-x64/native/libLibTorchSharp.so | tail -1)
copy_app src/TaH.Server/bin/Release/net10.0 app
copy_app tests/TaH.Kernels.Tests/bin/Release/net10.0 kernels
nm -D --undefined-only "$bridge" | awk '{print $2}' | grep -E '^_Z' > "$dest/bridge-undefined.txt" || true

dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
runtime=$(ls -d "$dotnet_root"/shared/Microsoft.NETCore.App/10.* | sort -V | tail -1)
fxr=$(ls -d "$dotnet_root"/host/fxr/* | sort -V | tail -1)
stamp="$dest/dotnet.version"
if [ ! -f "$dest/dotnet.tar.xz" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$runtime" ]; then
  echo "packing the .NET runtime ($runtime)"
  tar -C "$dotnet_root" -cf - dotnet "${fxr#"$dotnet_root"/}" "${runtime#"$dotnet_root"/}" | xz -T2 -6 > "$dest/dotnet.tar.xz"
  echo "$runtime" > "$stamp"
fi

cp scripts/gpu/*.sh scripts/gpu/*.py "$dest/"
du -sh "$dest"
