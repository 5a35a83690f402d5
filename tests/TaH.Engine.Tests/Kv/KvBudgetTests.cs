using TaH.Engine.Kv;

namespace TaH.Engine.Tests.Kv;

/// <summary>The pool's arithmetic: worst-case blocks of a request, and the inverses the server plans with.</summary>
public sealed class KvBudgetTests
{
    [Fact]
    public void ARequestReservesItsPromptOnceAndPerSampleItsOutputAndTwoCopiesAtEveryDepth()
    {
        var budget = new KvBudget(BlockSize: 16, MaxDepth: 2, TotalBlocks: 1024);
        Assert.Equal(0, budget.BlocksFor(0));
        Assert.Equal(1, budget.BlocksFor(16));
        Assert.Equal(2, budget.BlocksFor(17));
        // 33 prompt tokens: 3 blocks; 3 samples of 40 tokens: 3 + 2 each; twice for two depths.
        Assert.Equal(2 * (3 + (3 * (3 + 2))), budget.BlocksForRequest(33, 40, 3));
    }

    [Fact]
    public void TheTokensAndSamplesThatFitAreTheLargestThatFit()
    {
        for (int total = 2; total <= 64; total += 3)
        {
            foreach (int depth in new[] { 1, 2 })
            {
                var budget = new KvBudget(4, depth, total);
                for (int prompt = 1; prompt <= 40; prompt++)
                {
                    for (int n = 1; n <= 4; n++)
                    {
                        int fit = budget.MaxTokensFitting(prompt, n);
                        if (fit >= 1)
                        {
                            Assert.True(budget.Fits(prompt, fit, n), $"{total} blocks, depth {depth}, prompt {prompt}, n {n}: {fit} should fit");
                        }

                        Assert.False(budget.Fits(prompt, fit + 1, n), $"{total} blocks, depth {depth}, prompt {prompt}, n {n}: {fit + 1} should not fit");
                    }

                    int samples = budget.MaxSamplesFitting(prompt);
                    Assert.True(samples == 0 || budget.Fits(prompt, 1, samples));
                    Assert.False(budget.Fits(prompt, 1, samples + 1));
                }
            }
        }
    }

    [Fact]
    public void AdmittingAPrefixHitTakesItsUnheldBlocksACopyOfEachPartFilledDeepBlockAndTheRest()
    {
        var budget = new KvBudget(BlockSize: 4, MaxDepth: 2, TotalBlocks: 64);
        int[] depth1 = [10, 11, 12];                     // 12 cached entries; block 11 is held by another sequence
        var deep = new DeepPrefix(2, 6, [20, 21], [0, 0], [0, 1, 2, 3, 4, 5]); // 6 depth-2 entries: one full block, one part-filled
        bool Held(int b) => b is 11;
        // Blocks 10 and 12 leave the evictable list (2), block 20 too (1), block 21 is copied (1),
        // and 12 + 9 = 21 depth-1 entries need 6 blocks, 3 of which the hit brings: 3 more.
        Assert.Equal(2 + 1 + 1 + 3, budget.BlocksToAdmit(depth1, [deep], 21, Held));
    }
}
