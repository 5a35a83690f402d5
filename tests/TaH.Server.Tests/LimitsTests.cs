using System.ClientModel;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using OpenAI;
using OpenAI.Chat;

namespace TaH.Server.Tests;

/// <summary>Servers started with particular limits: body size, queue, KV pool, keys, loading.</summary>
[Collection(ServerCollection.Name)]
public sealed class LimitsTests
{
    private static object LongStream(int maxTokens = 1500) => new
    {
        messages = new[] { new { role = "user", content = "Go on forever." } },
        max_tokens = maxTokens,
        ignore_eos = true,
        stream = true,
        tah = new { policy = "always" },
    };

    [Fact]
    public async Task ABodyOverTheLimitIs413()
    {
        await using var server = await TestServer.StartAsync(new() { ["Server:MaxBodyBytes"] = "2048" });
        var big = new { messages = new[] { new { role = "user", content = new string('x', 4096) } } };
        using var response = await server.Http.PostAsync("/v1/chat/completions", JsonContent.Create(big));
        Assert.Equal(413, (int)response.StatusCode);
        ErrorTests.AssertOpenAiError(await response.Content.ReadAsStringAsync(), "invalid_request_error", null, "request_too_large");

        // Without a Content-Length (chunked), the limit holds too.
        var chunked = new StringContent(System.Text.Json.JsonSerializer.Serialize(big), Encoding.UTF8, "application/json");
        chunked.Headers.ContentLength = null;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = chunked };
        request.Headers.TransferEncodingChunked = true;
        using var response2 = await server.Http.SendAsync(request);
        Assert.Equal(413, (int)response2.StatusCode);
        ErrorTests.AssertOpenAiError(await response2.Content.ReadAsStringAsync(), "invalid_request_error", null, "request_too_large");

        var (status, _) = await server.PostAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = "small" } }, max_tokens = 1 });
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task AFullQueueIs429()
    {
        await using var server = await TestServer.StartAsync(new() { ["Server:MaxRunning"] = "1", ["Server:MaxWaiting"] = "1" });
        using var cancel = new CancellationTokenSource();
        var running = await OpenStreamAsync(server, cancel.Token); // decoding
        await WaitUntil(() => server.Host.Loop.Snapshot is { Running: 1, Waiting: 0 }); // admitted, so it no longer counts as waiting
        var waiting = await OpenStreamAsync(server, cancel.Token); // queued behind it
        await WaitUntil(() => server.Host.Loop.Snapshot is { Running: 1, Waiting: 1 });

        var (status, json) = await server.PostAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 1 });
        Assert.Equal(429, status);
        ErrorTests.AssertOpenAiError(json!.ToJsonString(), "rate_limit_error", null, "queue_full");

        running.Dispose();
        waiting.Dispose();
        await cancel.CancelAsync();
        await server.AssertEngineIdleAsync();
    }

    [Fact]
    public async Task AnAnswerLargerThanTheKvPoolIsRefused()
    {
        // 16 blocks of 16 entries, 2 depths: about 100 tokens of prompt and answer.
        await using var server = await TestServer.StartAsync(new() { ["Server:KvBlocks"] = "16" });
        var (status, json) = await server.PostAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 500 });
        Assert.Equal(400, status);
        ErrorTests.AssertOpenAiError(json!.ToJsonString(), "invalid_request_error", "max_tokens", "kv_cache_too_small");

        // Without max_tokens the default is clamped to what fits.
        (status, json) = await server.PostAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = "hi" } }, ignore_eos = true });
        Assert.Equal(200, status);
        Assert.InRange((int)json!["usage"]!["completion_tokens"]!, 50, 120);
    }

    [Fact]
    public async Task WhileTheModelLoadsRequestsGet503AndReadyIsFalse()
    {
        var gate = new TaskCompletionSource();
        await using var server = await TestServer.StartAsync(beforeLoad: () => gate.Task, waitReady: false);

        using (var ready = await server.Http.GetAsync("/ready"))
        {
            Assert.Equal(503, (int)ready.StatusCode);
        }

        using (var health = await server.Http.GetAsync("/health"))
        {
            Assert.Equal(200, (int)health.StatusCode);
        }

        var (status, json) = await server.PostAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = "hi" } } });
        Assert.Equal(503, status);
        ErrorTests.AssertOpenAiError(json!.ToJsonString(), "service_unavailable", null, "model_loading");

        gate.SetResult();
        await server.WaitReadyAsync();
        (status, _) = await server.PostAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 1 });
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task ApiKeysAreRequiredUnder_v1_WhenConfigured()
    {
        await using var server = await TestServer.StartAsync(new() { ["Server:ApiKeys:0"] = "key-one", ["Server:ApiKeys:1"] = "key-two" });
        var body = new { messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 1 };

        async Task<(int Status, string Body, HttpResponseMessage Response)> Post(string? authorization)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(body) };
            if (authorization is not null)
            {
                request.Headers.TryAddWithoutValidation("Authorization", authorization);
            }

            var response = await server.Http.SendAsync(request);
            return ((int)response.StatusCode, await response.Content.ReadAsStringAsync(), response);
        }

        foreach (var bad in new string?[] { null, "Bearer wrong", "Bearer key-on", "Bearer key-one-and-more", "Basic a2V5LW9uZQ==", "key-one" })
        {
            var (status, text, response) = await Post(bad);
            Assert.True(status == 401, $"{bad ?? "no header"}: {status} {text}");
            ErrorTests.AssertOpenAiError(text, "authentication_error", null, "invalid_api_key");
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
        }

        Assert.Equal(200, (await Post("Bearer key-one")).Status);
        Assert.Equal(200, (await Post("Bearer key-two")).Status);

        // The probes, the metrics and the page stay open, as in vLLM.
        foreach (var open in new[] { "/health", "/ready", "/metrics", "/" })
        {
            using var response = await server.Http.GetAsync(open);
            Assert.True(response.IsSuccessStatusCode, open);
        }

        // And the SDK sees the same.
        var wrong = new ChatClient(TestModel.Name, new ApiKeyCredential("nope"), new OpenAIClientOptions { Endpoint = server.V1 });
        var e = await Assert.ThrowsAsync<ClientResultException>(() => wrong.CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(401, e.Status);
        var right = new ChatClient(TestModel.Name, new ApiKeyCredential("key-two"), new OpenAIClientOptions { Endpoint = server.V1 });
        var ok = await right.CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 1 });
        Assert.Equal(1, ok.Value.Usage.OutputTokenCount);
    }

    /// <summary>Opens a streaming request and reads its headers; the body is left unread.</summary>
    internal static async Task<HttpResponseMessage> OpenStreamAsync(TestServer server, CancellationToken cancel, object? body = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(body ?? LongStream()) };
        var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(new MediaTypeHeaderValue("text/event-stream") { CharSet = "utf-8" }, response.Content.Headers.ContentType);
        return response;
    }

    internal static async Task WaitUntil(Func<bool> condition)
    {
        for (int i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(20);
        }

        Assert.True(condition());
    }
}
