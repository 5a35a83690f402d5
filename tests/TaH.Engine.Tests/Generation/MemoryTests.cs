using TaH.Engine.Generation;
using TaH.Engine.Kv;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TorchSharp;

namespace TaH.Engine.Tests.Generation;

/// <summary>
/// TorchSharp memory is native: every step must dispose what it made. Counts of live tensors are
/// process-wide, so these run alone.
/// </summary>
[Collection(SerialCollection.Name)]
public class MemoryTests
{
    [Theory]
    [InlineData("decider", "fp32")]
    [InlineData("always", "fp32")]
    [InlineData("decider", "q8_0")]
    [InlineData("always", "bf16")]
    public void LongGenerationKeepsLiveTensorsAndNativeMemoryFlat(string policy, string weights)
    {
        using var model = ModelLoader.Load(Fixtures.TinyCheckpoint("a"), ModelOptions.Parse("cpu", weights));
        var request = new GenerationRequest
        {
            PromptTokens = [5, 77, 301, 42, 9, 250, 17, 88],
            MaxTokens = 400,
            Policy = IterationPolicy.Parse(policy),
            Sampling = new SamplingParams { Temperature = 0.8f, Seed = 7 },
            IgnoreEos = true,
        };
        // Tensors other tests left to the garbage collector must not count against this one.
        Settle();
        long before = torch.Tensor.TotalCount;
        using (var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = KvBudget.PoolFor(request, model.MaxDepth) }))
        {
            var liveAt = new Dictionary<int, long>();
            var rssAt = new Dictionary<int, long>();
            int produced = 0;
            foreach (var e in engine.Generate(request))
            {
                produced++;
                if (produced is 50 or 400)
                {
                    Settle();
                    liveAt[produced] = torch.Tensor.TotalCount;
                    rssAt[produced] = ResidentBytes();
                }
            }

            Assert.Equal(400, produced);

            // Between token 50 and 400 a leak of even one tensor per step would add 350.
            Assert.InRange(liveAt[400] - liveAt[50], -2, 2);
            Assert.True(rssAt[400] - rssAt[50] < 32L << 20, $"resident memory grew by {(rssAt[400] - rssAt[50]) >> 20} MiB over 350 tokens");
        }

        Settle();
        Assert.Equal(before, torch.Tensor.TotalCount);
    }

    private static void Settle()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    private static long ResidentBytes()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }
        }

        throw new InvalidOperationException("no VmRSS in /proc/self/status");
    }
}
