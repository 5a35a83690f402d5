using System.Text;
using System.Text.Json.Nodes;

namespace TaH.Server.Tests;

/// <summary>Bad input: each gets a 4xx in OpenAI's error shape that names the problem, never a 500.</summary>
[Collection(ServerCollection.Name)]
public sealed class ErrorTests(SharedServer shared)
{
    private const string Chat = "/v1/chat/completions";
    private const string Completions = "/v1/completions";
    private const string Msgs = """
        "messages": [{"role": "user", "content": "hi"}]
        """;

    private readonly TestServer _server = shared.Server;

    public static TheoryData<string, string, int, string?, string?> BadRequests => new()
    {
        // path, body, status, param, code
        { Chat, """{"model": "gpt-4", MSGS}""", 404, "model", "model_not_found" },
        { Chat, """{MSGS, "max_tokens": -5}""", 400, "max_tokens", null },
        { Chat, """{MSGS, "max_completion_tokens": 0}""", 400, "max_completion_tokens", null },
        { Chat, """{MSGS, "temperature": 2.5}""", 400, "temperature", null },
        { Chat, """{MSGS, "temperature": -0.1}""", 400, "temperature", null },
        { Chat, """{MSGS, "temperature": "hot"}""", 400, "temperature", "invalid_type" },
        { Chat, """{MSGS, "max_tokens": 1.5}""", 400, "max_tokens", "invalid_type" },
        { Chat, """{MSGS, "top_p": 0}""", 400, "top_p", null },
        { Chat, """{MSGS, "top_k": -2}""", 400, "top_k", null },
        { Chat, """{MSGS, "min_p": 1.5}""", 400, "min_p", null },
        { Chat, """{MSGS, "presence_penalty": 3}""", 400, "presence_penalty", null },
        { Chat, """{MSGS, "frequency_penalty": -3}""", 400, "frequency_penalty", null },
        { Chat, """{MSGS, "repetition_penalty": 0}""", 400, "repetition_penalty", null },
        { Chat, """{MSGS, "n": 0}""", 400, "n", null },
        { Chat, """{MSGS, "n": 1000}""", 400, "n", null },
        { Chat, """{MSGS, "stop": 5}""", 400, "stop", null },
        { Chat, """{MSGS, "stop": [""]}""", 400, "stop", null },
        { Chat, """{MSGS, "logprobs": true, "top_logprobs": 21}""", 400, "top_logprobs", null },
        { Chat, """{MSGS, "top_logprobs": 2}""", 400, "top_logprobs", null },
        { Chat, """{MSGS, "stream_options": {"include_usage": true}}""", 400, "stream_options", null },
        { Chat, """{MSGS, "logit_bias": {"42": 5}}""", 400, "logit_bias", "unsupported_parameter" },
        { Chat, """{MSGS, "response_format": {"type": "json_schema"}}""", 400, "response_format", null },
        { Chat, """{MSGS, "response_format": {"type": "grammar"}}""", 400, "response_format", "unsupported_parameter" },
        { Chat, """{MSGS, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}""", 400, "tool_choice", null },
        { Chat, """{MSGS, "tool_choice": "required"}""", 400, "tool_choice", null },
        { Chat, """{MSGS, "tool_choice": {"type": "function", "function": {"name": "f"}}}""", 400, "tool_choice", null },
        { Chat, """{MSGS, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": 5, "function": {"name": "f"}}}""", 400, "tool_choice", null },
        { Chat, """{MSGS, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": ""}}}""", 400, "tool_choice", null },
        { Chat, """{MSGS, "tools": [{"type": "retrieval"}]}""", 400, "tools[0]", null },
        { Chat, """{MSGS, "tah": {"policy": "sometimes"}}""", 400, "tah.policy", null },
        { Chat, """{MSGS, "tah": {"policy": "decider", "threshold": 1.5}}""", 400, "tah.threshold", null },
        { Chat, """{MSGS, "tah": {"policy": "always", "threshold": 0.5}}""", 400, "tah.threshold", null },
        { Chat, """{MSGS, "chat_template_kwargs": {"enable_thinking": "no"}}""", 400, "chat_template_kwargs.enable_thinking", null },
        { Chat, """{MSGS, "stop_token_ids": [-1]}""", 400, "stop_token_ids", null },
        { Chat, """{MSGS, "max_tokens": 100000}""", 400, "max_tokens", "context_length_exceeded" },
        { Chat, """{"messages": []}""", 400, "messages", null },
        { Chat, """{}""", 400, "messages", null },
        { Chat, """{"messages": "hi"}""", 400, "messages", "invalid_type" },
        { Chat, """{"messages": [{"role": "robot", "content": "hi"}]}""", 400, "messages[0].role", null },
        { Chat, """{"messages": [{"role": "user"}]}""", 400, "messages[0].content", null },
        { Chat, """{"messages": [{"role": "user", "content": 42}]}""", 400, "messages[0].content", null },
        { Chat, """{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}""", 400, "messages[0].content[0].type", "unsupported_parameter" },
        { Chat, """{"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}""", 400, "messages[0].tool_calls[0].function.arguments", null },
        { Chat, """{MSGS, "continue_final_message": true}""", 400, "continue_final_message", null },
        { Chat, """{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}], "continue_final_message": true, "add_generation_prompt": true}""", 400, "continue_final_message", null },
        { Chat, """{"messages": [{"role": "user", "content": "hi"}""", 400, null, "invalid_json" },
        { Chat, """not json at all""", 400, null, "invalid_json" },
        { Chat, """[1, 2]""", 400, null, "invalid_json" },
        { Chat, "", 400, null, "invalid_json" },
        { Completions, """{}""", 400, "prompt", null },
        { Completions, """{"prompt": 42}""", 400, "prompt", null },
        { Completions, """{"prompt": [1, 2, 99999999]}""", 400, "prompt", null },
        { Completions, """{"prompt": [[1, 2], "x", 3]}""", 400, "prompt[2]", null },
        { Completions, """{"prompt": "hi", "suffix": "x"}""", 400, "suffix", "unsupported_parameter" },
        { Completions, """{"prompt": "hi", "best_of": 3}""", 400, "best_of", "unsupported_parameter" },
        { Completions, """{"prompt": "hi", "echo": true, "logprobs": 1}""", 400, "echo", "unsupported_parameter" },
        { Completions, """{"prompt": "hi", "logprobs": 50}""", 400, "logprobs", null },
        { Completions, """{"prompt": "hi", "model": "other"}""", 404, "model", "model_not_found" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadInputGetsAnOpenAiErrorNamingTheProblem(string path, string body, int status, string? param, string? code)
    {
        using var response = await _server.Http.PostAsync(path, new StringContent(body.Replace("MSGS", Msgs, StringComparison.Ordinal), Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == (int)response.StatusCode, $"status {(int)response.StatusCode}: {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        AssertOpenAiError(text, "invalid_request_error", param, code);
    }

    // A body template with one string replaced by BAD; the field's name as the 400 must give it.
    public static TheoryData<string, string, string> InvalidTextFields => new()
    {
        { Chat, """{"messages": [{"role": "user", "content": "BAD"}]}""", "messages[0].content" },
        { Chat, """{"messages": [{"role": "user", "content": [{"type": "text", "text": "BAD"}]}]}""", "messages[0].content[0].text" },
        { Chat, """{MSGS, "stop": "BAD"}""", "stop" },
        { Chat, """{MSGS, "stop": ["ok", "BAD"]}""", "stop[1]" },
        { Chat, """{MSGS, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "BAD"}""", "tool_choice" },
        { Chat, """{MSGS, "tools": [{"type": "function", "function": {"name": "BAD"}}]}""", "tools[0].function.name" },
        { Chat, """{MSGS, "guided_regex": "BAD"}""", "guided_regex" },
        { Chat, """{MSGS, "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"const": "BAD"}}}}""", "response_format.json_schema.schema.const" },
        { Chat, """{MSGS, "model": "BAD"}""", "model" },
        { Chat, """{"messages": [{"role": "BAD", "content": "hi"}]}""", "messages[0].role" },
        { Chat, """{MSGS, "user": "BAD"}""", "user" },
        { Completions, """{"prompt": "BAD"}""", "prompt" },
        { Completions, """{"prompt": ["fine", "BAD"]}""", "prompt[1]" },
    };

    // Lone and reversed surrogate escapes, and raw bytes that are not UTF-8 (issue 11's fuzz finds).
    private static readonly byte[][] InvalidText =
    [
        "\\ud800"u8.ToArray(), "\\udfff\\ud800"u8.ToArray(), "a\\ud83d"u8.ToArray(),
        [0xFF, 0xFE], [0xC0, 0x80], [0xED, 0xA0, 0x80],
    ];

    [Theory]
    [MemberData(nameof(InvalidTextFields))]
    public async Task InvalidTextIsA400NamingTheField(string path, string template, string param)
    {
        var parts = template.Replace("MSGS", Msgs, StringComparison.Ordinal).Split("BAD");
        foreach (var bad in InvalidText)
        {
            byte[] body = [.. Encoding.UTF8.GetBytes(parts[0]), .. bad, .. Encoding.UTF8.GetBytes(parts[1])];
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            using var response = await _server.Http.PostAsync(path, content);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True((int)response.StatusCode == 400, $"{Convert.ToHexString(bad)} in {param}: {(int)response.StatusCode} {text}");
            AssertOpenAiError(text, "invalid_request_error", param, "invalid_string");
        }
    }

    [Fact]
    public async Task ANullMessageIsA400()
    {
        var (status, json) = await _server.PostAsync(Chat, """{"messages": [null]}""");
        Assert.Equal(400, status);
        AssertOpenAiError(json!.ToJsonString(), "invalid_request_error", "messages[0]", null);
    }

    [Fact]
    public async Task APromptOverTheContextIsRefused()
    {
        // The shared server's context is 2048 tokens.
        var prompt = string.Concat(Enumerable.Repeat("hello ", 2100));
        var (status, json) = await _server.PostAsync(Chat, new { messages = new[] { new { role = "user", content = prompt } } });
        Assert.Equal(400, status);
        Assert.Equal("context_length_exceeded", (string?)json!["error"]!["code"]);
        Assert.Contains("2048", (string)json["error"]!["message"]!, StringComparison.Ordinal);

        (status, json) = await _server.PostAsync(Completions, new { prompt, max_tokens = 1 });
        Assert.Equal(400, status);
        Assert.Equal("context_length_exceeded", (string?)json!["error"]!["code"]);

        // More messages than the context holds, whatever they say (two special tokens each).
        (status, json) = await _server.PostAsync(Chat, new { messages = Enumerable.Repeat(new { role = "user", content = "" }, 1025).ToArray() });
        Assert.Equal(400, status);
        Assert.Equal("messages", (string?)json!["error"]!["param"]);
        Assert.Equal("context_length_exceeded", (string?)json!["error"]!["code"]);
    }

    [Fact]
    public async Task UnknownRoutesAndModelsAre404InOpenAiShape()
    {
        using var missing = await _server.Http.GetAsync("/v1/engines");
        Assert.Equal(404, (int)missing.StatusCode);
        AssertOpenAiError(await missing.Content.ReadAsStringAsync(), "invalid_request_error", null, "not_found");

        using var model = await _server.Http.GetAsync("/v1/models/gpt-4");
        Assert.Equal(404, (int)model.StatusCode);
        AssertOpenAiError(await model.Content.ReadAsStringAsync(), "invalid_request_error", "model", "model_not_found");
    }

    [Fact]
    public async Task ValidRequestsStillWorkAfterTheErrors()
    {
        var (status, json) = await _server.PostAsync(Chat, new { messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 2 });
        Assert.Equal(200, status);
        Assert.Equal(2, (int)json!["usage"]!["completion_tokens"]!);
        await _server.AssertEngineIdleAsync();
    }

    internal static void AssertOpenAiError(string text, string type, string? param, string? code)
    {
        var error = JsonNode.Parse(text)!["error"]!.AsObject();
        Assert.Equal(["message", "type", "param", "code"], error.Select(p => p.Key));
        var message = (string)error["message"]!;
        Assert.False(string.IsNullOrWhiteSpace(message));
        Assert.DoesNotContain("   at ", message, StringComparison.Ordinal); // no stack trace
        Assert.DoesNotContain("System.", message, StringComparison.Ordinal); // no .NET type names
        Assert.Equal(type, (string)error["type"]!);
        Assert.Equal(param, (string?)error["param"]);
        if (code is not null)
        {
            Assert.Equal(code, (string?)error["code"]);
        }
    }
}
