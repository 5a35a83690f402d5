using System.Diagnostics;

namespace TaH.Kernels.Cpu;

/// <summary>
/// Wall time spent in the weight kernels (<see cref="Q8_0Gemm"/>, <see cref="Bf16Gemm"/>) since
/// the process started, as the caller sees it: what a benchmark sets against the step time.
/// </summary>
public static class KernelClock
{
    private static long _ticks;

    public static TimeSpan Elapsed => Stopwatch.GetElapsedTime(0, Volatile.Read(ref _ticks));

    internal static long Start() => Stopwatch.GetTimestamp();

    internal static void Stop(long start) => Interlocked.Add(ref _ticks, Stopwatch.GetTimestamp() - start);
}
