using System.Net.Http.Json;
using System.Text;
using Serilog.Events;

namespace TaH.Server.Tests;

/// <summary>What a load and fault run found (issue 11): media types, hosts, Retry-After, bursts, the request log.</summary>
[Collection(ServerCollection.Name)]
public sealed class HardeningTests(SharedServer shared)
{
    private const string Chat = "/v1/chat/completions";
    private const string Small = """{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}""";

    private readonly TestServer _server = shared.Server;

    [Theory]
    [InlineData("text/plain")]
    [InlineData("application/x-www-form-urlencoded")]
    [InlineData("application/json; charset=utf-16")]
    [InlineData(null)]
    public async Task ABodyThatIsNotJsonByItsMediaTypeIs415(string? mediaType)
    {
        using var content = new ByteArrayContent(Encoding.UTF8.GetBytes(Small));
        if (mediaType is not null)
        {
            content.Headers.TryAddWithoutValidation("Content-Type", mediaType);
        }

        using var response = await _server.Http.PostAsync(Chat, content);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == 415, $"{mediaType}: {(int)response.StatusCode} {text}");
        ErrorTests.AssertOpenAiError(text, "invalid_request_error", null, "unsupported_media_type");
    }

    [Theory]
    [InlineData("application/json")]
    [InlineData("application/json; charset=utf-8")]
    [InlineData("Application/JSON")]
    public async Task JsonMediaTypesAreAccepted(string mediaType)
    {
        using var content = new ByteArrayContent(Encoding.UTF8.GetBytes(Small));
        content.Headers.TryAddWithoutValidation("Content-Type", mediaType);
        using var response = await _server.Http.PostAsync(Chat, content);
        Assert.Equal(200, (int)response.StatusCode);
    }

    [Fact]
    public async Task OnLoopbackOnlyTheLoopbackNamesAreAnswered()
    {
        // A page on a rebound name posts text/plain (no preflight) with its own Host header.
        foreach (var (host, path, status) in new[] { ("attacker.example", Chat, 400), ("attacker.example", "/", 400), ("localhost", "/v1/models", 200), ("127.0.0.1", "/v1/models", 200) })
        {
            using var request = new HttpRequestMessage(path == Chat ? HttpMethod.Post : HttpMethod.Get, path);
            request.Headers.Host = $"{host}:{_server.BaseAddress.Port}";
            if (path == Chat)
            {
                request.Content = new StringContent(Small, Encoding.UTF8, "text/plain");
            }

            using var response = await _server.Http.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True((int)response.StatusCode == status, $"{host} {path}: {(int)response.StatusCode} {text}");
            if (status == 400)
            {
                ErrorTests.AssertOpenAiError(text, "invalid_request_error", null, "host_not_allowed");
            }
        }
    }

    [Fact]
    public async Task AllowedHostsCanBeConfigured()
    {
        await using var server = await TestServer.StartAsync(new() { ["Server:AllowedHosts:0"] = "tah.internal,*.tah.example" }, waitReady: false);
        foreach (var (host, status) in new[] { ("tah.internal", 200), ("a.tah.example", 200), ("127.0.0.1", 400), ("tah.example", 400) })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/health");
            request.Headers.Host = host;
            using var response = await server.Http.SendAsync(request);
            Assert.True((int)response.StatusCode == status, $"{host}: {(int)response.StatusCode}");
        }
    }

    [Fact]
    public async Task A429AndA503SayWhenToRetry()
    {
        await using (var server = await TestServer.StartAsync(new() { ["Server:MaxRunning"] = "1", ["Server:MaxWaiting"] = "1" }))
        {
            using var cancel = new CancellationTokenSource();
            var running = await LimitsTests.OpenStreamAsync(server, cancel.Token);
            await LimitsTests.WaitUntil(() => server.Host.Loop.Snapshot is { Running: 1, Waiting: 0 });
            var waiting = await LimitsTests.OpenStreamAsync(server, cancel.Token);
            await LimitsTests.WaitUntil(() => server.Host.Loop.Snapshot is { Running: 1, Waiting: 1 });
            using var full = await server.Http.PostAsync(Chat, new StringContent(Small, Encoding.UTF8, "application/json"));
            Assert.Equal(429, (int)full.StatusCode);
            Assert.True(full.Headers.RetryAfter?.Delta is { TotalSeconds: >= 1 }, $"Retry-After: {full.Headers.RetryAfter}");
            running.Dispose();
            waiting.Dispose();
            await cancel.CancelAsync();
        }

        var gate = new TaskCompletionSource();
        await using var loading = await TestServer.StartAsync(beforeLoad: () => gate.Task, waitReady: false);
        using var unavailable = await loading.Http.PostAsync(Chat, new StringContent(Small, Encoding.UTF8, "application/json"));
        Assert.Equal(503, (int)unavailable.StatusCode);
        Assert.True(unavailable.Headers.RetryAfter?.Delta is { TotalSeconds: >= 1 }, $"Retry-After: {unavailable.Headers.RetryAfter}");
        gate.SetResult();
    }

    [Fact]
    public async Task ABurstWhileRunningSlotsAreFreeIsNotRefused()
    {
        // --max-waiting 4 --max-running 2, idle: six at once is two running and four waiting.
        await using var server = await TestServer.StartAsync(new() { ["Server:MaxRunning"] = "2", ["Server:MaxWaiting"] = "4" });
        var body = """{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "ignore_eos": true}""";
        var statuses = await Task.WhenAll(Enumerable.Range(0, 6).Select(async _ =>
        {
            using var response = await server.Http.PostAsync(Chat, new StringContent(body, Encoding.UTF8, "application/json"));
            return (int)response.StatusCode;
        }));
        Assert.All(statuses, s => Assert.Equal(200, s));
        await server.AssertEngineIdleAsync();
    }

    [Fact]
    public async Task EveryRequestIsLoggedOnceWithItsStatusAndNeverTheKey()
    {
        const string Key = "sk-secret-key-never-logged";
        await using var server = await TestServer.StartAsync(new() { ["Server:ApiKeys:0"] = Key, ["Server:MaxRunning"] = "1", ["Server:MaxWaiting"] = "1" });
        async Task<int> Send(string? key, string body)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, Chat) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            if (key is not null)
            {
                request.Headers.TryAddWithoutValidation("Authorization", $"Bearer {key}");
            }

            using var response = await server.Http.SendAsync(request);
            return (int)response.StatusCode;
        }

        Assert.Equal(200, await Send(Key, Small));
        Assert.Equal(401, await Send("sk-wrong-" + Key, Small));
        Assert.Equal(400, await Send(Key, """{"messages": []}"""));

        // A 429: one running, one waiting, one refused.
        using var cancel = new CancellationTokenSource();
        var streams = new List<HttpResponseMessage>();
        for (int i = 0; i < 2; i++)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, Chat) { Content = JsonContent.Create(new { messages = new[] { new { role = "user", content = "Go on." } }, max_tokens = 1500, ignore_eos = true, stream = true }) };
            request.Headers.TryAddWithoutValidation("Authorization", $"Bearer {Key}");
            streams.Add(await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token));
            await LimitsTests.WaitUntil(() => server.Host.Loop.Snapshot.Running + server.Host.Loop.Snapshot.Waiting == i + 1);
        }

        Assert.Equal(429, await Send(Key, Small));
        foreach (var s in streams)
        {
            s.Dispose();
        }

        await cancel.CancelAsync();
        await server.AssertEngineIdleAsync();

        List<LogEvent> lines = [];
        await LimitsTests.WaitUntil(() => (lines = [.. server.Logs.Events.Where(e => e.MessageTemplate.Text.StartsWith("HTTP ", StringComparison.Ordinal) && Scalar(e, "RequestPath") as string == Chat)]).Count >= 6);
        var statuses = lines.Select(e => (int)Scalar(e, "StatusCode")!).ToList();
        Assert.Equal(6, statuses.Count);
        foreach (int status in new[] { 401, 400, 429 })
        {
            Assert.Equal(1, statuses.Count(s => s == status));
        }

        Assert.All(lines, e => Assert.Equal("POST", Scalar(e, "RequestMethod")));
        var everything = string.Join("\n", server.Logs.Events.Select(e => e.RenderMessage() + " " + string.Join(" ", e.Properties.Values)));
        Assert.DoesNotContain(Key, everything, StringComparison.Ordinal);
    }

    private static object? Scalar(LogEvent e, string name) =>
        e.Properties.TryGetValue(name, out var value) && value is ScalarValue s ? s.Value : null;
}
