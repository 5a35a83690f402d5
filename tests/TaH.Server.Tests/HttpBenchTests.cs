using TaH.Engine.TaH;
using TaH.Server.Bench;

namespace TaH.Server.Tests;

/// <summary><c>tah bench --url</c> against the real server: it must count every token and read each token's depth.</summary>
public sealed class HttpBenchTests(SharedServer shared) : IClassFixture<SharedServer>
{
    [Theory]
    [InlineData("never", 0.0)]
    [InlineData("always", 1.0)]
    public async Task CountsTokensAndReadsTheirDepths(string policy, double share)
    {
        var server = shared.Server;
        var (model, vocab) = await HttpBench.DescribeAsync(server.BaseAddress, apiKey: null);
        Assert.Equal(TestModel.Name, model);

        using var bench = new HttpBench(server.BaseAddress, null, model, vocab);
        var scenario = new BenchScenario(IterationPolicy.Parse(policy), Concurrency: 3, PromptTokens: 8, DecodeTokens: 6);
        var result = bench.Run(scenario, seed: 1);

        Assert.Equal(share, result.Depth2Share);
        Assert.True(result.DecodeTokensPerSecond > 0);
        Assert.True(result.TimeToFirstTokenP50 > 0 && result.TimeToFirstTokenP50 <= result.TimeToFirstTokenP99);
        Assert.True(result.InterTokenP50 >= 0);
        await server.AssertEngineIdleAsync();
    }
}
