#!/usr/bin/env bash
# Runs on the GPU machine (no .NET, no network; PyTorch with its CUDA libraries): unpacks the
# runtime packed by pack.sh, points TorchSharp at PyTorch's libtorch, then runs the steps named
# on the command line (default: all) and writes $OUT/report.md, $OUT/log.txt and JSON results.
#   steps: env symbols info attention fused torchref bench torchbench torch engine enginecheck sanitizer
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$here/out}
mkdir -p "$OUT"
log="$OUT/log.txt"
steps=${*:-all}
[ "$steps" = all ] && steps="env symbols info attention fused torchref bench torchbench torch engine enginecheck sanitizer"
work=/tmp/tah-gpu
mkdir -p "$work"
export PYTHONUNBUFFERED=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_NOLOGO=1
export TAH_KERNEL_CACHE=$work/kernel-cache

if [ ! -x "$work/dotnet/dotnet" ]; then
  mkdir -p "$work/dotnet" && xz -dc "$here/dotnet.tar.xz" | tar -C "$work/dotnet" -xf -
fi
export DOTNET_ROOT=$work/dotnet PATH=$work/dotnet:$PATH
py=$(command -v python3)
site=$($py -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))')
torchlib=$site/torch/lib
nvlibs=$(find "$site/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH=$torchlib:$nvlibs${LD_LIBRARY_PATH:-}
nvrtc=$(find "$site/nvidia" /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib -name 'libnvrtc.so.1[0-9]*' 2>/dev/null | grep -v builtins | sort | tail -1)
[ -n "$nvrtc" ] && export TAH_NVRTC=$nvrtc

status() { echo "| $1 | $2 |" >> "$OUT/steps.md"; }
run() { # name timeout command...
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*" | tee -a "$log"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$log"
  status "$name" "exit $rc, $((SECONDS - t0)) s"
  return $rc
}


# The repository's Qwen3 tokenizer fixture, when the checkout travelled with it: lets `generate` run.
tokenizer=""
[ -f "$here/../tests/fixtures/qwen3-tokenizer/tokenizer.json" ] && tokenizer="--tokenizer $here/../tests/fixtures/qwen3-tokenizer"
echo "| step | result |" > "$OUT/steps.md"; echo "|---|---|" >> "$OUT/steps.md"

for step in $steps; do
  case $step in
    env)
      run env 60 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv; nvcc --version | tail -2; $py -c 'import torch; print(\"torch\", torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'; echo torchlib=$torchlib; echo TAH_NVRTC=\${TAH_NVRTC:-none}; ls $torchlib | head -40; dotnet --info | head -20" ;;
    symbols)
      run symbols 120 $py "$here/torch_reference.py" symbols "$here/bridge-undefined.txt" "$torchlib" ;;
    info)
      run info 300 dotnet "$here/kernels/TaH.Kernels.Tests.dll" info ;;
    attention)
      run attention 300 dotnet "$here/kernels/TaH.Kernels.Tests.dll" attention --out "$work" --cases 48 --dump 12 ;;
    fused)
      run fused 120 dotnet "$here/kernels/TaH.Kernels.Tests.dll" fused ;;
    torchref)
      run torchref 200 $py "$here/torch_reference.py" check "$work/cases" "$OUT/torch_check.json" ;;
    sanitizer)
      run memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 9 dotnet "$here/kernels/TaH.Kernels.Tests.dll" attention --out "$work/san" --cases 8 --dump 0
      run memcheck-fused 90 compute-sanitizer --tool memcheck --error-exitcode 9 dotnet "$here/kernels/TaH.Kernels.Tests.dll" fused --quick
      run racecheck 150 compute-sanitizer --tool racecheck --error-exitcode 9 dotnet "$here/kernels/TaH.Kernels.Tests.dll" attention --out "$work/san" --cases 3 --dump 0 ;;
    bench)
      run bench 300 dotnet "$here/kernels/TaH.Kernels.Tests.dll" bench --out "$OUT" ;;
    torchbench)
      run torchbench 200 $py "$here/torch_reference.py" bench "$OUT/bench_kernels.json" "$OUT/bench_torch.json" ;;
    torch)
      run torch 200 dotnet "$here/kernels/TaH.Kernels.Tests.dll" torch --out "$work" ;;
    engine)
      model=$work/qwen3-1.7b
      [ -f "$model/config.json" ] || run create-random 200 dotnet "$here/app/tah.dll" create-random --shape qwen3-1.7b --out "$model" $tokenizer
      [ -n "$tokenizer" ] && run engine-generate 120 dotnet "$here/app/tah.dll" generate --model "$model" --device cuda --prompt "What is 17 * 23?" -n 16 --greedy --color never
      run engine-bench 300 dotnet "$here/app/tah.dll" bench --model "$model" --device cuda --policies never,decider,always --prompt-tokens 32 --tokens 64 --rounds 5 --target-share 0.06 --json "$OUT/bench_engine.json"
      ;;
    enginecheck)
      model=$work/qwen3-1.7b
      [ -f "$model/config.json" ] || run create-random 200 dotnet "$here/app/tah.dll" create-random --shape qwen3-1.7b --out "$model" $tokenizer
      run engine-check 200 dotnet "$here/kernels/TaH.Kernels.Tests.dll" engine-check --model "$model" --prompt-tokens 24 ;;
    *) echo "unknown step $step" | tee -a "$log" ;;
  esac
done

$py "$here/torch_reference.py" report "$OUT" > "$OUT/report.md" 2>>"$log"
cat "$OUT/report.md"
