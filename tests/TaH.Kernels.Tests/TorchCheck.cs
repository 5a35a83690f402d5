using TaH.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels.Tests;

/// <summary>
/// TorchSharp on the GPU machine's libtorch: does it load and compute, and do the kernels work on
/// its tensors' memory and stream (CudaPagedAttention, CudaFusedOps, CudaSampler).
/// </summary>
internal static class TorchCheck
{
    public static int Run(string outDir)
    {
        InitializeDeviceType(DeviceType.CUDA);
        Console.WriteLine($"TorchSharp: cuda available {cuda.is_available()}, {cuda.device_count()} device(s)");
        var gpu = CUDA;
        int failures = 0, passed = 0;
        void Report(bool ok, string what)
        {
            Console.WriteLine($"{(ok ? "ok  " : "FAIL")} {what}");
            if (ok)
            {
                passed++;
            }
            else
            {
                failures++;
            }
        }

        using (NewDisposeScope())
        {
            var a = randn(1024, 1024, dtype: ScalarType.BFloat16, device: gpu);
            var b = a.matmul(a);
            cuda.synchronize();
            float sum = b.to(ScalarType.Float32).abs().mean().item<float>();
            Report(float.IsFinite(sum) && sum > 1, $"bf16 matmul on the GPU through TorchSharp (mean |x| {sum:F2})");
        }

        // Paged attention on TorchSharp tensors: the kernel against the double reference and the CPU reference.
        var random = new Random(11);
        var c = AttentionCase.Create(random, true, 16, 8, 128, 16, [300, 40, 700, 5], 0.1, (d1, d2) =>
            Enumerable.Range(Math.Max(0, d1.Length - 20), Math.Min(20, d1.Length)).Select(i => (1, i))
                .Concat(Enumerable.Range(0, d2.Length).Where(i => d2[i] >= d1.Length - 20).Select(i => (2, i))));
        using (NewDisposeScope())
        {
            var b = c.Batch;
            var keys = tensor(c.KeyPool, [c.Slots, c.KvHeads, c.HeadDim]);
            var values = tensor(c.ValuePool, [c.Slots, c.KvHeads, c.HeadDim]);
            var slots = tensor(b.RowSlot);
            var q = tensor(c.Q, [b.RowCount, c.Heads, c.HeadDim]);
            var k = keys.index_select(0, slots);
            var v = values.index_select(0, slots);
            var expected = c.Reference();

            var gpuKeys = keys.to(ScalarType.BFloat16).to(gpu).index_fill_(0, slots.to(gpu), float.NaN);
            var gpuValues = values.to(ScalarType.BFloat16).to(gpu).index_fill_(0, slots.to(gpu), float.NaN);
            var attention = new CudaPagedAttention();
            using var plan = attention.Prepare(b, gpu);
            var output = attention.Forward(plan, q.to(ScalarType.BFloat16).to(gpu), k.to(ScalarType.BFloat16).to(gpu), v.to(ScalarType.BFloat16).to(gpu),
                new LayerKv(gpuKeys, gpuValues), 1.0 / Math.Sqrt(c.HeadDim));
            var actual = output.to(ScalarType.Float32).cpu().data<float>().ToArray();
            var (rel, max) = AttentionCase.Compare(expected, actual);
            Report(rel < 1.5e-2, $"CudaPagedAttention on TorchSharp bf16 tensors vs double reference: rel L2 {rel:E2}, max abs {max:E2}");

            var cpuKeys = keys.clone();
            var cpuValues = values.clone();
            var reference = new ReferenceAttention();
            using var cpuPlan = reference.Prepare(b, CPU);
            var cpuOut = reference.Forward(cpuPlan, q, k, v, new LayerKv(cpuKeys, cpuValues), 1.0 / Math.Sqrt(c.HeadDim));
            var (relCpu, _) = AttentionCase.Compare(expected, cpuOut.data<float>().ToArray());
            var cpuAsDouble = cpuOut.data<float>().ToArray().Select(x => (double)x).ToArray();
            var (relGpuCpu, maxGpuCpu) = AttentionCase.Compare(cpuAsDouble, actual);
            Report(relCpu < 1e-5 && relGpuCpu < 1.5e-2, $"CPU ReferenceAttention vs double {relCpu:E2}; GPU kernel vs CPU ReferenceAttention: rel L2 {relGpuCpu:E2}, max abs {maxGpuCpu:E2}");
        }

        // Fused ops against the TorchSharp composition on the same GPU tensors.
        using (NewDisposeScope())
        {
            var ops = new CudaFusedOps();
            var torchOps = TorchFusedOps.Instance;
            var x = randn(7, 2048, device: gpu).mul(3).to(ScalarType.BFloat16);
            var w = randn(2048, device: gpu).to(ScalarType.BFloat16);
            Report(Close(ops.RmsNorm(x, w, 1e-6), torchOps.RmsNorm(x, w, 1e-6), out string d1), $"CudaFusedOps.RmsNorm vs TorchSharp ops: {d1}");

            int rows = 9, heads = 16, kvHeads = 8, headDim = 128;
            var qkv = randn(rows, (heads + (2 * kvHeads)) * headDim, device: gpu).mul(2).to(ScalarType.BFloat16);
            var qn = randn(headDim, device: gpu).to(ScalarType.BFloat16);
            var kn = randn(headDim, device: gpu).to(ScalarType.BFloat16);
            var positions = randint(0, 30000, [rows], dtype: ScalarType.Int64, device: gpu).to(ScalarType.Float32);
            var invFreq = pow(1e6, arange(0, headDim, 2, device: gpu).to(ScalarType.Float32).div(headDim)).reciprocal();
            var freqs = positions.unsqueeze(1).mul(invFreq.unsqueeze(0));
            var emb = cat([freqs, freqs], 1).unsqueeze(1);
            var cos = emb.cos().to(ScalarType.BFloat16);
            var sin = emb.sin().to(ScalarType.BFloat16);
            var (q1, k1, v1) = ops.QkvNormRope(qkv, heads, kvHeads, headDim, qn, kn, cos, sin, 1e-6);
            var (q2, k2, v2) = torchOps.QkvNormRope(qkv, heads, kvHeads, headDim, qn, kn, cos, sin, 1e-6);
            Report(Close(q1, q2, out string dq) & Close(k1, k2, out string dk) & Close(v1, v2, out string dv), $"CudaFusedOps.QkvNormRope vs TorchSharp ops: q {dq}; k {dk}; v {dv}");

            var top = randn(3, 128, device: gpu).mul(3).to(ScalarType.BFloat16);
            var ids = randint(0, 5000, [3, 128], dtype: ScalarType.Int64, device: gpu);
            var embed = randn(5000, 2048, device: gpu).mul(0.05).to(ScalarType.BFloat16);
            Report(Close(ops.SoftTopKMix(top, ids, 100, embed), torchOps.SoftTopKMix(top, ids, 100, embed), out string dm), $"CudaFusedOps.SoftTopKMix vs TorchSharp ops: {dm}");

            var logits = randn(4, 151936, device: gpu).mul(4);
            var greedy = new CudaSampler().Sample(logits, [0f, 0f, 0f, 0f], [0, 0, 0, 0], [1f, 1f, 1f, 1f], [0.5f, 0.5f, 0.5f, 0.5f]);
            var argmax = logits.argmax(1).cpu().data<long>().ToArray();
            Report(greedy.SequenceEqual(argmax), $"CudaSampler greedy = argmax ({string.Join(",", greedy)})");
        }

        // What one TorchSharp op costs the host at batch-1 decode sizes: the engine's floor per op.
        using (NewDisposeScope())
        {
            var x = randn(1, 2048, device: gpu).to(ScalarType.BFloat16);
            var w = randn(2048, 2048, device: gpu).to(ScalarType.BFloat16);
            for (int i = 0; i < 200; i++)
            {
                using var y = x.add(1);
            }

            cuda.synchronize();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            const int ops = 5000;
            for (int i = 0; i < ops; i++)
            {
                using var y = x.add(1);
            }

            cuda.synchronize();
            double perAdd = clock.Elapsed.TotalMilliseconds * 1000 / ops;
            clock.Restart();
            for (int i = 0; i < ops; i++)
            {
                using var y = nn.functional.linear(x, w);
            }

            cuda.synchronize();
            double perLinear = clock.Elapsed.TotalMilliseconds * 1000 / ops;
            Console.WriteLine($"TorchSharp op cost at batch 1: add {perAdd:F1} us/op, linear 2048x2048 bf16 {perLinear:F1} us/op (host-bound when above the GPU time)");
            File.WriteAllText(Path.Combine(outDir, "torchsharp_op_cost.txt"), $"add_us {perAdd:F2}\nlinear_2048_us {perLinear:F2}\n");
        }

        Console.WriteLine($"torch: {passed} passed, {failures} failed");
        return failures == 0 ? 0 : 1;
    }

    /// <summary>Two 16-bit results agree to within bf16 rounding noise (relative L2 below 1e-2).</summary>
    private static bool Close(Tensor actual, Tensor expected, out string detail)
    {
        using var scope = NewDisposeScope();
        var a = actual.to(ScalarType.Float32);
        var e = expected.to(ScalarType.Float32);
        double rel = a.sub(e).norm().item<float>() / Math.Max(1e-12, e.norm().item<float>());
        long differing = a.ne(e).sum().item<long>();
        detail = $"rel L2 {rel:E2}, {differing} of {a.numel()} elements differ";
        return rel < 1e-2 && !double.IsNaN(rel);
    }
}
