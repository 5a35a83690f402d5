using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.TaH;

namespace TaH.Kernels.Tests;

/// <summary>
/// The whole engine on the GPU (bf16, CUDA kernels) against the CPU path (fp32, reference
/// attention) on one checkpoint: per-position logits of a prompt and the greedy continuation.
/// </summary>
internal static class EngineCheck
{
    public static int Run(string model, int promptTokens)
    {
        using var cpu = ModelLoader.Load(model, ModelOptions.Cpu);
        using var gpu = ModelLoader.Load(model, ModelOptions.Parse("cuda"));

        // The same bf16 GPU model on TorchSharp ops alone: separates kernel errors from bf16 ones.
        Environment.SetEnvironmentVariable("TAH_CUDA_KERNELS", "0");
        using var gpuTorch = ModelLoader.Load(model, ModelOptions.Parse("cuda"));
        Environment.SetEnvironmentVariable("TAH_CUDA_KERNELS", null);
        var random = new Random(5);
        var prompt = Enumerable.Range(0, promptTokens).Select(_ => random.Next(cpu.Config.VocabSize)).ToArray();
        int failures = 0, passed = 0;
        foreach (var policy in new[] { IterationPolicy.Parse("never", null), IterationPolicy.Parse("always", null) })
        {
            var a = Inspection.Run(cpu, prompt, policy, 4);
            var b = Inspection.Run(gpu, prompt, policy, 4);
            Environment.SetEnvironmentVariable("TAH_CUDA_KERNELS", "0");
            var c = Inspection.Run(gpuTorch, prompt, policy, 4);
            Environment.SetEnvironmentVariable("TAH_CUDA_KERNELS", null);
            double kernelsVsTorch = 0, torchVsCpu = 0;
            for (int i = 0; i < c.Prefill.Length; i++)
            {
                kernelsVsTorch = Math.Max(kernelsVsTorch, AttentionCase.Compare([.. c.Prefill[i].FinalLogits.Select(x => (double)x)], b.Prefill[i].FinalLogits).RelL2);
                torchVsCpu = Math.Max(torchVsCpu, AttentionCase.Compare([.. a.Prefill[i].FinalLogits.Select(x => (double)x)], c.Prefill[i].FinalLogits).RelL2);
            }

            Console.WriteLine($"     {policy}: worst logits rel L2, GPU kernels vs GPU TorchSharp ops (both bf16) {kernelsVsTorch:E2}; GPU TorchSharp ops vs CPU fp32 {torchVsCpu:E2}; " +
                $"greedy GPU TorchSharp ops [{string.Join(",", c.GreedyTokens)}]");

            double worst = 0;
            int argmaxAgree = 0;
            for (int i = 0; i < a.Prefill.Length; i++)
            {
                var (rel, _) = AttentionCase.Compare([.. a.Prefill[i].FinalLogits.Select(x => (double)x)], b.Prefill[i].FinalLogits);
                worst = Math.Max(worst, rel);
                argmaxAgree += ArgMax(a.Prefill[i].FinalLogits) == ArgMax(b.Prefill[i].FinalLogits) ? 1 : 0;
            }

            // The kernels must sit no farther from the bf16 TorchSharp path than bf16 sits from fp32:
            // a random model's depth-2 path (soft top-k input) amplifies bf16 rounding by itself.
            bool depths = a.Prefill.Select(r => r.Depth).SequenceEqual(b.Prefill.Select(r => r.Depth));
            bool ok = depths && kernelsVsTorch <= Math.Max(5e-2, 1.5 * torchVsCpu) && (policy.Kind != PolicyKind.Never || worst < 5e-2);
            Console.WriteLine($"{(ok ? "ok  " : "FAIL")} engine {policy}: {a.Prefill.Length} prompt positions, worst logits rel L2 GPU bf16 vs CPU fp32 {worst:E2}, " +
                $"argmax agrees at {argmaxAgree}/{a.Prefill.Length}, depths {(depths ? "equal" : "DIFFER")}; greedy CPU [{string.Join(",", a.GreedyTokens)}] GPU [{string.Join(",", b.GreedyTokens)}]");
            if (ok)
            {
                passed++;
            }
            else
            {
                failures++;
            }
        }

        Console.WriteLine($"engine: {passed} passed, {failures} failed");
        return failures == 0 ? 0 : 1;
    }

    private static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }

        return best;
    }
}
