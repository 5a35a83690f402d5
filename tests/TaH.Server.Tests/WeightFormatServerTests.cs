using TaH.Engine.Model;

namespace TaH.Server.Tests;

/// <summary>The server's Weights setting (<c>--weights</c>, <c>TAH_Server__Weights</c>).</summary>
public sealed class WeightFormatServerTests
{
    [Theory]
    [InlineData("q8_0", WeightFormat.Q8_0)]
    [InlineData("q4_0", WeightFormat.Q4_0)]
    [InlineData("bf16", WeightFormat.Bf16)]
    public async Task TheServerLoadsAndAnswersInTheChosenFormat(string setting, WeightFormat expected)
    {
        await using var server = await TestServer.StartAsync(new() { ["Server:Weights"] = setting });
        Assert.Equal(expected, server.Host.Model.Weights);
        Assert.Equal(expected, server.Host.Model.DeciderWeights);
        var (status, body) = await server.PostAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = "What is 12+30?" } }, max_tokens = 4, temperature = 0 });
        Assert.Equal(200, status);
        Assert.False(string.IsNullOrEmpty((string?)body!["choices"]![0]!["message"]!["content"]));
        Assert.Contains(server.Logs.Events, e => e.Properties.TryGetValue("Weights", out var v) && v.ToString() == $"\"{setting}\"");
    }

    [Fact]
    public async Task TheDeciderCanTakeAnotherFormat()
    {
        await using var server = await TestServer.StartAsync(new() { ["Server:Weights"] = "q4_0", ["Server:DeciderWeights"] = "q8_0" });
        Assert.Equal((WeightFormat.Q4_0, WeightFormat.Q8_0), (server.Host.Model.Weights, server.Host.Model.DeciderWeights));
        Assert.Contains(server.Logs.Events, e => e.Properties.TryGetValue("Decider", out var v) && v.ToString().Contains("q8_0 weights", StringComparison.Ordinal));
    }
}
