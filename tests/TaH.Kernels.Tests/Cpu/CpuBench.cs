using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TaH.Kernels.Cpu;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels.Tests.Cpu;

/// <summary>
/// <c>cpu-bench</c>: min-of-N timings of the CPU weight kernels on the Qwen3-0.6B layer shapes
/// beside torch's fp32 <c>linear</c> and a plain read of the same bytes (the bandwidth ceiling),
/// and one decode step's worth of them (every layer once, and the head). Noisy on a shared
/// machine: read the minimum, and compare rows of one run.
/// </summary>
internal static unsafe class CpuBench
{
    private static readonly (string Name, int N, int K)[] Shapes =
        [("qkv", 4096, 1024), ("o", 1024, 2048), ("gate_up", 6144, 1024), ("down", 1024, 3072), ("head", 151936, 1024)];

    public static int Run(string only, int repeats, bool stepOnly = false)
    {
        if (stepOnly)
        {
            Step(repeats);
            return 0;
        }

        var isas = only is "" ? CpuIsas.Supported : [Enum.Parse<CpuIsa>(only, ignoreCase: true)];
        Console.WriteLine($"threads {CpuWorkerPool.Shared.Threads}, torch threads {get_num_threads()}, best {CpuIsas.Best}; min of {repeats}");
        var random = new Random(1);
        foreach (var (name, n, k) in Shapes)
        {
            using var w = new Q8_0Matrix(n, k);
            var values = new float[Math.Min(n, 4096) * k];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = (float)(random.NextDouble() - 0.5);
            }

            for (int r = 0; r < n; r += 4096)
            {
                w.Quantize(r, values.AsSpan(0, Math.Min(4096, n - r) * k));
            }

            using var dense = randn(n, k);
            foreach (int m in new[] { 1, 4, 16, 64 })
            {
                using var x = randn(m, k);
                using var y = empty(m, n);
                float* px = (float*)Cuda.CudaNative.THSTensor_data(x.Handle);
                float* py = (float*)Cuda.CudaNative.THSTensor_data(y.Handle);
                var line = $"{name,-8} {n,6}x{k,-5} m={m,-3}";
                foreach (var isa in isas)
                {
                    double s = Time(() => Q8_0Gemm.Multiply(w, px, m, py, isa: isa), repeats);
                    line += $" | {isa} {s * 1e3,7:F3} ms {w.Bytes / s / 1e9,5:F1} GB/s {2.0 * m * n * k / s / 1e9,6:F1} GFLOP/s";
                }

                double t = Time(() => torch.nn.functional.linear(x, dense).Dispose(), repeats);
                line += $" | torch fp32 {t * 1e3,7:F3} ms";
                if (m == 1)
                {
                    double read = Time(() => Read(w), repeats);
                    line += $" | read {w.Bytes / read / 1e9,5:F1} GB/s";
                }

                Console.WriteLine(line);
            }
        }

        Step(repeats);
        return 0;
    }

    /// <summary>One decode step's GEMMs (28 layers and the head) with distinct weights, so nothing stays in cache.</summary>
    private static void Step(int repeats)
    {
        var layers = new List<Q8_0Matrix>();
        try
        {
            for (int i = 0; i < 28; i++)
            {
                foreach (var (_, n, k) in Shapes[..4])
                {
                    layers.Add(new Q8_0Matrix(n, k));
                }
            }

            layers.Add(new Q8_0Matrix(151936, 1024));
            long bytes = layers.Sum(l => l.Bytes);
            int maxK = 3072, maxN = 151936;
            var x = (float*)NativeMemory.AlignedAlloc((nuint)(64 * maxK * 4), 64);
            var y = (float*)NativeMemory.AlignedAlloc((nuint)(64L * maxN * 4), 64);
            new Span<float>(x, 64 * maxK).Fill(0.25f);
            foreach (int m in new[] { 1, 16 })
            {
                double s = Time(() =>
                {
                    foreach (var l in layers)
                    {
                        Q8_0Gemm.Multiply(l, x, m, y);
                    }
                }, Math.Max(3, repeats / 4));
                Console.WriteLine($"decode step, m={m}: {layers.Count} GEMMs, {bytes / 1e6:F0} MB in {s * 1e3:F1} ms = {bytes / s / 1e9:F1} GB/s, {m / s:F1} tok/s from the GEMMs alone");
            }

            NativeMemory.AlignedFree(x);
            NativeMemory.AlignedFree(y);
        }
        finally
        {
            layers.ForEach(l => l.Dispose());
        }
    }

    private sealed class ReadJob(Q8_0Matrix w) : PoolJob
    {
        public long Sink;

        public override void Execute(int item)
        {
            int tiles = w.Tiles, per = (tiles + 63) / 64;
            var acc = Vector512<sbyte>.Zero;
            for (int t = item * per; t < Math.Min(tiles, (item + 1) * per); t++)
            {
                sbyte* q = (sbyte*)w.TileQuants(t);
                for (int i = 0; i < w.Blocks * 128; i += 64)
                {
                    acc |= Vector512.Load(q + i);
                }
            }

            Interlocked.Add(ref Sink, Vector512.Sum(acc.AsInt64()));
        }
    }

    private static void Read(Q8_0Matrix w) => CpuWorkerPool.Shared.Run(new ReadJob(w), 64);

    private static double Time(Action action, int repeats)
    {
        action();
        double best = double.MaxValue;
        for (int i = 0; i < repeats; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }

        return best;
    }
}
