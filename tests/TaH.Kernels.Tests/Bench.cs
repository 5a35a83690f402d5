using System.Text.Json;
using TaH.Kernels.Cuda;

namespace TaH.Kernels.Tests;

/// <summary>
/// Attention benchmarks on the GPU: decode bandwidth against a device-to-device copy, prefill
/// throughput on a causal and a duo-causal shape (scripts/gpu/torch_reference.py times torch's
/// flash and masked attention on the same shapes). Medians of event-timed runs.
/// </summary>
internal static class Bench
{
    public const int Heads = 16;
    public const int KvHeads = 8;
    public const int HeadDim = 128;

    public static int Run(string outDir, string only)
    {
        var device = CudaDevice.Get();
        var results = new Dictionary<string, object> { ["device"] = CudaInfo.Describe(device) };
        double copy = CopyBandwidth();
        results["copy_gbps"] = copy;
        Console.WriteLine($"device-to-device copy: {copy:F0} GB/s (bytes read + written)");

        if (only is "" or "decode")
        {
            var decode = new List<object>();
            foreach (var (batch, context) in new[] { (32, 4096), (8, 16384), (1, 32768), (64, 1024) })
            {
                var random = new Random(batch * 7 + context);
                var c = AttentionCase.Create(random, true, Heads, KvHeads, HeadDim, 16, Enumerable.Repeat(context, batch).ToArray(), 0.06,
                    (d1, _) => [(1, d1.Length - 1)], fillValues: false);
                using var raw = new RawAttention(device, c, poisonRowSlots: false, randomBits: random);
                double ms = Time(raw.Attend, 5, 30);
                long bytes = raw.Layout.DecodeEntries * KvHeads * HeadDim * 2 * 2;
                double gbps = bytes / ms / 1e6;
                var (split, splits) = raw.Layout.DecodeSplits(KvHeads, device.Multiprocessors);
                Console.WriteLine($"decode batch {batch,3} x context {context,6}: {ms * 1000,8:F1} us  {gbps,6:F0} GB/s  = {gbps / copy,5:P0} of copy bandwidth  (splits {splits} x {split})");
                decode.Add(new { batch, context, ms, bytes, gbps, share_of_copy = gbps / copy, splits });
            }

            results["decode"] = decode;
        }

        if (only is "" or "prefill")
        {
            var prefill = new List<object>();
            foreach (var (name, share) in new[] { ("causal", 0.0), ("duo-causal", 0.06) })
            {
                const int sequences = 4, length = 4096;
                var random = new Random(length + (int)(share * 100));
                var c = AttentionCase.Create(random, true, Heads, KvHeads, HeadDim, 16, Enumerable.Repeat(length, sequences).ToArray(), share,
                    (d1, d2) => Enumerable.Range(0, d1.Length).Select(i => (1, i)).Concat(Enumerable.Range(0, d2.Length).Select(i => (2, i))), fillValues: false);
                long visible = Visible(c);
                double usefulFlops = 4.0 * Heads * HeadDim * visible;
                double causalFlops = 4.0 * sequences * Heads * HeadDim * length * (double)length / 2;
                int deep = c.Batch.Sequences.Sum(s => s.Depths[1].Count);
                var variants = new Dictionary<string, double>();
                var engineVariant = PrefillVariant.Default;
                PrefillVariant[] candidates = [new(1, 64, 1), new(1, 64, 2), new(2, 64, 1), new(2, 64, 2), new(2, 32, 1), new(2, 32, 2)];
                foreach (var variant in candidates)
                {
                    using var raw = new RawAttention(device, c, poisonRowSlots: false, randomBits: new Random(1), prefill: variant);
                    double t = Time(raw.Attend, 3, 15);
                    var (regs, local, _) = raw.Kernels.Resources("prefill_attention");
                    variants[variant.ToString()] = t;
                    Console.WriteLine($"prefill {name,-10} {sequences} x {length} (+{deep} depth-2 rows), {variant,-40}: {t,7:F3} ms  {usefulFlops / t / 1e9,6:F1} TFLOP/s useful  ({regs} registers, {local} local bytes){(variant == engineVariant ? "  <- engine default" : "")}");
                }

                // The engine's configuration is what is reported; the others are for choosing it.
                double ms = variants[engineVariant.ToString()];
                prefill.Add(new { name, sequences, length, depth2_rows = deep, depth2_rows_per_sequence = c.Batch.Sequences.Select(s => s.Depths[1].Count).ToArray(), ms, variants, useful_flops = usefulFlops, causal_formula_flops = causalFlops, tflops_useful = usefulFlops / ms / 1e9 });
            }

            results["prefill"] = prefill;
        }

        File.WriteAllText(Path.Combine(outDir, "bench_kernels.json"), JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }

    private static long Visible(AttentionCase c)
    {
        long total = 0;
        var b = c.Batch;
        for (int r = 0; r < b.RowCount; r++)
        {
            var s = b.Sequences[b.RowSequence[r]];
            for (int d = 0; d < b.RowDepth[r] && d < s.Depths.Count; d++)
            {
                var t = s.Depths[d];
                total += t.Positions.Take(t.Count).Count(p => p <= b.RowPosition[r]);
            }
        }

        return total;
    }

    /// <summary>Median milliseconds of <paramref name="runs"/> event-timed launches after a warm-up.</summary>
    public static double Time(Action action, int warmup, int runs)
    {
        for (int i = 0; i < warmup; i++)
        {
            action();
        }

        CudaDevice.Synchronize();
        using var timer = new CudaTimer();
        var times = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            timer.Start();
            action();
            times.Add(timer.Stop());
        }

        times.Sort();
        return times[times.Count / 2];
    }

    private static double CopyBandwidth()
    {
        const long bytes = 1L << 30;
        using var a = DeviceBuffer.Allocate(bytes);
        using var b = DeviceBuffer.Allocate(bytes);
        a.Fill(1);
        double ms = Time(() => CudaNative.Check(CudaNative.cuMemcpyDtoD(b.Pointer, a.Pointer, (nuint)bytes), "cuMemcpyDtoD"), 2, 10);
        return 2.0 * bytes / ms / 1e6;
    }
}
