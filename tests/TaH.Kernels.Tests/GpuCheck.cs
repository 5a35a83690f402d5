using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TaH.Kernels.Cuda;

namespace TaH.Kernels.Tests;

/// <summary>
/// The GPU machine's checks and benchmarks, as verbs of this test assembly (only the .NET runtime
/// travels there, not the SDK): <c>info</c>, <c>attention</c>, <c>fused</c>, <c>bench</c>,
/// <c>torch</c>, <c>compile-all</c>. Each writes its findings under <c>--out DIR</c>. Also
/// <c>cpu-bench</c>, the CPU weight kernels' microbenchmark (any machine).
/// </summary>
internal static class GpuCheck
{
    public static int Run(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine("usage: TaH.Kernels.Tests info|attention|fused|bench|torch|engine-check|compile-all|cpu-bench [--out DIR] [--cases N] [--dump N]");
            return 2;
        }

        string Arg(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }

        string outDir = Arg("--out", ".");
        Directory.CreateDirectory(outDir);
        try
        {
            return args[0] switch
            {
                "compile-all" => CompileAll(Arg("--arch", "compute_90")),
                "info" => Info(),
                "attention" => Attention(outDir, int.Parse(Arg("--cases", "60"), CultureInfo.InvariantCulture), int.Parse(Arg("--dump", "8"), CultureInfo.InvariantCulture)),
                "fused" => Fused(args.Contains("--quick")),
                "bench" => Bench.Run(outDir, Arg("--only", "")),
                "torch" => TorchCheck.Run(outDir),
                "cpu-bench" => Cpu.CpuBench.Run(Arg("--isa", ""), int.Parse(Arg("--repeats", "20"), CultureInfo.InvariantCulture), args.Contains("--step")),
                "engine-check" => EngineCheck.Run(Arg("--model", ""), int.Parse(Arg("--prompt-tokens", "24"), CultureInfo.InvariantCulture)),
                _ => throw new ArgumentException($"unknown verb '{args[0]}'"),
            };
        }
        catch (Exception e)
        {
            Console.WriteLine($"FAILED {args[0]}: {e}");
            return 1;
        }
    }

    private static int CompileAll(string arch)
    {
        foreach (var (file, defines) in KernelConfigurations.All())
        {
            var clock = Stopwatch.StartNew();
            var m = KernelCompiler.Compile(file, arch, defines);
            Console.WriteLine($"{file} {string.Join(' ', defines)}: {m.Image.Length} bytes, {clock.ElapsedMilliseconds} ms {m.Log}");
        }

        return 0;
    }

    private static int Info()
    {
        var device = CudaDevice.Get();
        Console.WriteLine(CudaInfo.Describe(device));
        foreach (var (file, defines) in KernelConfigurations.All())
        {
            var module = device.Module(file, defines);
            foreach (string kernel in KernelConfigurations.KernelsOf(file))
            {
                var (regs, local, shared) = module[kernel].Resources();
                if (defines.Contains("TAH_BF16") && (defines.Contains("GROUPS=2") || file == "fused.cu"))
                {
                    Console.WriteLine($"  {file} {string.Join(' ', defines),-32} {kernel,-20} registers {regs,3}  local bytes {local,4}  static shared {shared}");
                }
            }
        }

        return 0;
    }

    private static int Attention(string outDir, int cases, int dump)
    {
        var device = CudaDevice.Get();
        int failures = 0, index = 0;
        string caseDir = Path.Combine(outDir, "cases");
        foreach (var c in AttentionCase.RandomSuite(20261122, cases))
        {
            // The cases rotate through the prefill blockings the benchmark compares.
            int groups = c.Heads / c.KvHeads;
            PrefillVariant?[] variants = [null, new(1, 64, 1), new(1, 64, groups >= 2 ? 2 : 1), new(2, 32, groups >= 2 ? 2 : 1)];
            using var raw = new RawAttention(device, c, prefill: variants[index % variants.Length]);
            var actual = raw.Run();
            var (rel, max) = AttentionCase.Compare(c.Reference(), actual);
            // The rows' keys and values must now be in the pool at their slots.
            var pool = RawAttention.Read(raw.KeyPool, c.KeyPool.Length, c.Bf16);
            int width = c.KvHeads * c.HeadDim;
            bool written = c.Batch.RowSlot.All(s => Enumerable.Range(0, width).All(i => pool[(s * width) + i] == c.KeyPool[(s * width) + i]));
            bool ok = rel < 1.5e-2 && max < 5e-2 && written;
            failures += ok ? 0 : 1;
            Console.WriteLine($"{(ok ? "ok  " : "FAIL")} case {index,3}: {c.Describe(),-70} decode items {raw.Layout.DecodeItems,4} tiles {raw.Layout.TileCount,3} ({raw.Kernels.Prefill})  rel L2 {rel:E2}  max abs {max:E2}{(written ? "" : "  KV NOT WRITTEN")}");
            if (index < dump)
            {
                Dump(Path.Combine(caseDir, $"case{index:D3}"), c, actual);
            }

            index++;
        }

        Console.WriteLine($"attention: {index - failures} passed, {failures} failed");
        return failures == 0 ? 0 : 1;
    }

    /// <summary>A case as plain files for the Python check: tables and rows as JSON, tensors as raw float32.</summary>
    private static void Dump(string dir, AttentionCase c, float[] actual)
    {
        Directory.CreateDirectory(dir);
        var b = c.Batch;
        var manifest = new
        {
            heads = c.Heads,
            kv_heads = c.KvHeads,
            head_dim = c.HeadDim,
            block_size = b.BlockSize,
            slots = c.Slots,
            dtype = c.Bf16 ? "bf16" : "fp16",
            sequences = b.Sequences.Select(s => s.Depths.Select(t => new { blocks = t.Blocks, positions = t.Positions.Take(t.Count) })).ToArray(),
            row_sequence = b.RowSequence,
            row_position = b.RowPosition,
            row_depth = b.RowDepth,
        };
        File.WriteAllText(Path.Combine(dir, "case.json"), JsonSerializer.Serialize(manifest));
        WriteFloats(Path.Combine(dir, "q.f32"), c.Q);
        WriteFloats(Path.Combine(dir, "kpool.f32"), c.KeyPool);
        WriteFloats(Path.Combine(dir, "vpool.f32"), c.ValuePool);
        WriteFloats(Path.Combine(dir, "out.f32"), actual);
    }

    private static void WriteFloats(string path, float[] values)
    {
        using var file = File.Create(path);
        file.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
    }

    private static int Fused(bool quick)
    {
        var device = CudaDevice.Get();
        int failures = 0, passed = 0;
        foreach (var r in FusedChecks.All(device, 7, quick))
        {
            Console.WriteLine($"{(r.Passed ? "ok  " : "FAIL")} {r.Name,-48} {r.Detail}: {r.Error:G4} (limit {r.Limit})");
            if (r.Passed)
            {
                passed++;
            }
            else
            {
                failures++;
            }
        }

        Console.WriteLine($"fused: {passed} passed, {failures} failed");
        return failures == 0 ? 0 : 1;
    }
}
