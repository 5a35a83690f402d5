using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;

namespace TaH.Server.Tests;

/// <summary>Clients that go away, and a server that stops.</summary>
[Collection(ServerCollection.Name)]
public sealed class LifecycleTests(SharedServer shared)
{
    private readonly TestServer _server = shared.Server;

    [Fact]
    public async Task AClientThatDisconnectsMidStreamFreesItsSequence()
    {
        using var cancel = new CancellationTokenSource();
        var response = await LimitsTests.OpenStreamAsync(_server, cancel.Token);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
        int chunks = 0;
        while (chunks < 5 && await reader.ReadLineAsync(cancel.Token) is { } line)
        {
            chunks += line.StartsWith("data: ", StringComparison.Ordinal) ? 1 : 0;
        }

        // Mid-stream: the sequence holds KV blocks at both depths.
        var host = _server.Host;
        Assert.Equal(1, host.Loop.Snapshot.Running);
        Assert.True(host.Engine.Cache.FreeBlocks < host.Engine.Cache.TotalBlocks);
        Assert.All(host.Loop.Snapshot.BlocksByDepth, b => Assert.True(b > 0));

        await cancel.CancelAsync();
        response.Dispose();
        await _server.AssertEngineIdleAsync();
    }

    [Fact]
    public async Task AClientThatGivesUpOnAWholeResponseFreesItsSequence()
    {
        using var cancel = new CancellationTokenSource();
        var body = new { messages = new[] { new { role = "user", content = "Go on forever." } }, max_tokens = 1500, ignore_eos = true, tah = new { policy = "always" } };
        var request = _server.Http.PostAsync("/v1/chat/completions", JsonContent.Create(body), cancel.Token);
        await LimitsTests.WaitUntil(() => _server.Host.Loop.Snapshot.Running == 1);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        await _server.AssertEngineIdleAsync();
    }

    [Fact]
    public async Task OnStopInFlightStreamsFinishOrAreToldAndNewRequestsGet503()
    {
        // The grace period must outlast a 5-token answer on a loaded CI machine, and the endless
        // stream (2000 tokens, every one through the second pass) must outlast the grace period.
        var server = await TestServer.StartAsync(new() { ["Server:ShutdownGraceSeconds"] = "4" });
        try
        {
            using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(1));
            var endless = await LimitsTests.OpenStreamAsync(server, cancel.Token, new
            {
                messages = new[] { new { role = "user", content = "Go on forever." } },
                max_tokens = 2000,
                ignore_eos = true,
                stream = true,
                tah = new { policy = "always" },
            });
            var endlessBody = ReadAllAsync(endless, cancel.Token);
            var shortOne = LimitsTests.OpenStreamAsync(server, cancel.Token, new
            {
                messages = new[] { new { role = "user", content = "Be brief." } },
                max_tokens = 5,
                ignore_eos = true,
                stream = true,
            });
            var shortBody = ReadAllAsync(await shortOne, cancel.Token);
            await LimitsTests.WaitUntil(() => server.Host.Loop.Snapshot.Running >= 1);

            var clock = Stopwatch.StartNew();
            var stopping = server.App.StopAsync();
            await LimitsTests.WaitUntil(() => server.Host.State == Hosting.ModelState.Stopping);

            // Draining: still listening, but no new work, and not ready.
            var (status, json) = await server.PostAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = "hi" } } });
            Assert.Equal(503, status);
            ErrorTests.AssertOpenAiError(json!.ToJsonString(), "service_unavailable", null, "server_shutting_down");
            using (var ready = await server.Http.GetAsync("/ready"))
            {
                Assert.Equal(503, (int)ready.StatusCode);
            }

            // The short stream finished normally; the endless one was told, then closed.
            var shortEvents = await shortBody;
            Assert.Equal("[DONE]", shortEvents[^1]);
            Assert.Equal("length", (string?)JsonNode.Parse(shortEvents[^2])!["choices"]![0]!["finish_reason"]);

            var endlessEvents = await endlessBody;
            Assert.Equal("[DONE]", endlessEvents[^1]);
            var error = JsonNode.Parse(endlessEvents[^2])!["error"]!;
            Assert.Equal("server_shutting_down", (string?)error["code"]);
            Assert.Contains("shut down", (string)error["message"]!, StringComparison.Ordinal);

            await stopping;
            Assert.InRange(clock.Elapsed.TotalSeconds, 0, 4 + 10); // the grace period, then the bound
        }
        finally
        {
            await server.App.DisposeAsync();
        }
    }

    private static async Task<List<string>> ReadAllAsync(HttpResponseMessage response, CancellationToken cancel)
    {
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(cancel);
            return [.. text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e["data: ".Length..])];
        }
    }
}
