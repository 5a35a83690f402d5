namespace TaH.Server.Tests;

/// <summary>
/// A fresh clone serves the bundled demo model (trained here on multi-digit addition) when no
/// --model is given, and it answers a held-out question through the real HTTP API.
/// </summary>
public class DemoModelTests
{
    [Fact]
    public async Task ServesTheDemoModelByDefaultAndAnswersAHeldOutSum()
    {
        await using var server = await TestServer.StartAsync(new() { ["Server:Model"] = null });

        var (status, models) = await server.PostAsync("/v1/chat/completions", new
        {
            messages = new[] { new { role = "user", content = "What is 756+140?" } },
            temperature = 0,
        });
        Assert.Equal(200, status);
        Assert.Equal("tah-arith", (string)models!["model"]!);
        var message = models["choices"]![0]!["message"]!;
        Assert.Equal("896", (string)message["content"]!);
        Assert.Equal("stop", (string)models["choices"]![0]!["finish_reason"]!);

        // The leading digit depends on a carry: the decider sends it through the second pass.
        var depths = models["choices"]![0]!["tah"]!["depths"]!.AsArray().Select(d => (int)d!).ToArray();
        Assert.Equal(2, depths[0]);
        Assert.True((int)models["usage"]!["tah"]!["depth2_tokens"]! >= 1);
    }

    [Fact]
    public async Task WithoutTheSecondPassTheSameModelGetsItWrong()
    {
        await using var server = await TestServer.StartAsync(new() { ["Server:Model"] = null });
        var (status, body) = await server.PostAsync("/v1/chat/completions", new
        {
            messages = new[] { new { role = "user", content = "What is 756+140?" } },
            temperature = 0,
            tah = new { policy = "never" },
        });
        Assert.Equal(200, status);
        Assert.NotEqual("896", (string)body!["choices"]![0]!["message"]!["content"]!);
    }
}
