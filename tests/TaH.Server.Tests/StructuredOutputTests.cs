using System.ClientModel;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Json.Schema;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using Microsoft.SemanticKernel.Connectors.OpenAI;
using OpenAI;
using OpenAI.Chat;

#pragma warning disable OPENAI001 // Seed: seeded sampling makes these runs repeatable

namespace TaH.Server.Tests;

/// <summary>
/// Structured outputs through the real server and real clients: the OpenAI SDK's JSON Schema and
/// JSON object formats and forced tool calls, Semantic Kernel's typed structured output, streamed
/// and parallel choices, vLLM's guided_* fields, and the 400s for what cannot be enforced. The
/// model has random weights: only the constraint keeps its outputs valid, checked by JsonSchema.Net.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class StructuredOutputTests(SharedServer shared)
{
    private const string Chat = "/v1/chat/completions";
    private const string Person = """{"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer","minimum":0,"maximum":120},"tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":2}},"required":["name","age","tags"],"additionalProperties":false}""";
    private const string Weather = """{"type":"object","properties":{"city":{"type":"string","enum":["Paris","Oslo","Lima"]},"days":{"type":"integer","minimum":1,"maximum":7}},"required":["city","days"],"additionalProperties":false}""";
    private const string Clock = """{"type":"object","properties":{"zone":{"type":"string","maxLength":6}},"required":["zone"]}""";

    private readonly TestServer _server = shared.Server;

    private ChatClient Client() => new(TestModel.Name, new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = _server.V1 });

    /// <summary>Random weights rarely leave a think block: these requests turn thinking off, as vLLM's chat_template_kwargs does.</summary>
    private static ChatCompletionOptions NoThinking(ChatCompletionOptions options)
    {
#pragma warning disable SCME0001 // extra body fields: the SDK's documented way to send vLLM's parameters
        options.Patch.Set("$.chat_template_kwargs"u8, BinaryData.FromString("""{"enable_thinking": false}"""));
#pragma warning restore SCME0001
        return options;
    }

    /// <summary>A finished output validates; one cut by the length limit is at least the start of a JSON text.</summary>
    internal static void AssertValidOrCutShort(string schema, string text, bool finished)
    {
        if (finished)
        {
            var result = JsonSchema.FromText(schema).Evaluate(JsonNode.Parse(text), new EvaluationOptions { RequireFormatValidation = true });
            Assert.True(result.IsValid, $"{text} does not validate against {schema}");
            return;
        }

        var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(text), isFinalBlock: false, state: default);
        while (reader.Read())
        {
        }
    }

    [Fact]
    public async Task JsonSchemaFormatThroughTheOpenAiSdk()
    {
        int finished = 0;
        for (int seed = 1; seed <= 3; seed++)
        {
            var options = NoThinking(new ChatCompletionOptions
            {
                ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("person", BinaryData.FromString(Person), jsonSchemaIsStrict: true),
                Temperature = 1f,
                Seed = seed,
                MaxOutputTokenCount = 200,
            });
            var completion = (await Client().CompleteChatAsync([new UserChatMessage("Describe a person.")], options)).Value;
            string text = completion.Content.Single().Text;
            Assert.StartsWith("{", text, StringComparison.Ordinal);
            bool stopped = completion.FinishReason == ChatFinishReason.Stop;
            AssertValidOrCutShort(Person, text, stopped);
            finished += stopped ? 1 : 0;
        }

        Assert.True(finished > 0, "no output ended within 200 tokens");
    }

    [Fact]
    public async Task JsonObjectFormatThroughTheOpenAiSdk()
    {
        var options = NoThinking(new ChatCompletionOptions { ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat(), Temperature = 1f, Seed = 4, MaxOutputTokenCount = 48 });
        var completion = (await Client().CompleteChatAsync([new UserChatMessage("Some JSON, please.")], options)).Value;
        string text = completion.Content.Single().Text;
        Assert.StartsWith("{", text, StringComparison.Ordinal);
        if (completion.FinishReason == ChatFinishReason.Stop)
        {
            using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { AllowDuplicateProperties = false });
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        }
        else
        {
            Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
            AssertValidOrCutShort("true", text, finished: false);
        }
    }

    private static ChatTool Tool(string name, string parameters) => ChatTool.CreateFunctionTool(name, $"the {name} tool", BinaryData.FromString(parameters));

    [Fact]
    public async Task ANamedToolChoiceForcesThatCallThroughTheOpenAiSdk()
    {
        var options = NoThinking(new ChatCompletionOptions
        {
            Tools = { Tool("get_time", Clock), Tool("get_weather", Weather) },
            ToolChoice = ChatToolChoice.CreateFunctionChoice("get_weather"),
            Temperature = 1f,
            Seed = 7,
            MaxOutputTokenCount = 100,
        });
        var completion = (await Client().CompleteChatAsync([new UserChatMessage("Weather in Oslo?")], options)).Value;

        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        var call = Assert.Single(completion.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.StartsWith("call_", call.Id, StringComparison.Ordinal);
        AssertValidOrCutShort(Weather, call.FunctionArguments.ToString(), finished: true);
        await _server.AssertEngineIdleAsync();
    }

    [Fact]
    public async Task RequiredToolChoiceStreamsCallsThroughTheOpenAiSdk()
    {
        var schemas = new Dictionary<string, string> { ["get_time"] = Clock, ["get_weather"] = Weather };
        var options = NoThinking(new ChatCompletionOptions
        {
            Tools = { Tool("get_time", Clock), Tool("get_weather", Weather) },
            ToolChoice = ChatToolChoice.CreateRequiredChoice(),
            Temperature = 1f,
            Seed = 3,
            MaxOutputTokenCount = 150,
        });
        var names = new Dictionary<int, string>();
        var arguments = new Dictionary<int, StringBuilder>();
        ChatFinishReason? finish = null;
        await foreach (var update in Client().CompleteChatStreamingAsync([new UserChatMessage("Use a tool.")], options))
        {
            foreach (var call in update.ToolCallUpdates)
            {
                if (call.FunctionName is { } name)
                {
                    names[call.Index] = name;
                }

                (arguments.TryGetValue(call.Index, out var sb) ? sb : arguments[call.Index] = new StringBuilder()).Append(call.FunctionArgumentsUpdate?.ToString());
            }

            finish = update.FinishReason ?? finish;
        }

        Assert.Equal(ChatFinishReason.ToolCalls, finish);
        Assert.NotEmpty(names);
        foreach (var (index, name) in names)
        {
            AssertValidOrCutShort(schemas[name], arguments[index].ToString(), finished: true);
        }
    }

    [Fact]
    public async Task StreamedParallelChoicesEachFollowTheSchema()
    {
        var body = new
        {
            messages = new[] { new { role = "user", content = "A person." } },
            stream = true,
            n = 3,
            seed = 21,
            temperature = 1.0,
            max_tokens = 200,
            chat_template_kwargs = new { enable_thinking = false },
            response_format = new { type = "json_schema", json_schema = new { name = "person", schema = JsonNode.Parse(Person) } },
        };
        using var request = new HttpRequestMessage(HttpMethod.Post, Chat) { Content = JsonContent.Create(body) };
        using var response = await _server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        var raw = await response.Content.ReadAsStringAsync();
        var content = new Dictionary<int, StringBuilder>();
        var finish = new Dictionary<int, string>();
        foreach (var e in raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(x => x["data: ".Length..]).Where(d => d != "[DONE]"))
        {
            foreach (var choice in JsonNode.Parse(e)!["choices"]!.AsArray())
            {
                int index = (int)choice!["index"]!;
                (content.TryGetValue(index, out var sb) ? sb : content[index] = new StringBuilder()).Append((string?)choice["delta"]?["content"]);
                if ((string?)choice["finish_reason"] is { } reason)
                {
                    finish[index] = reason;
                }
            }
        }

        Assert.Equal([0, 1, 2], finish.Keys.Order());
        foreach (var (index, text) in content)
        {
            AssertValidOrCutShort(Person, text.ToString(), finish[index] == "stop");
        }

        Assert.Contains("stop", finish.Values);
        Assert.True(content.Values.Select(c => c.ToString()).Distinct().Count() > 1, "the choices sample with different seeds");
    }

    [Fact]
    public async Task GuidedRegexChoiceAndJsonOnBothEndpoints()
    {
        var (status, json) = await _server.PostAsync(Chat, new { messages = new[] { new { role = "user", content = "code?" } }, max_tokens = 20, seed = 2, chat_template_kwargs = new { enable_thinking = false }, guided_regex = "[a-c]{2}-[0-9]{1,3}" });
        Assert.Equal(200, status);
        Assert.Matches(new Regex("^[a-c]{2}-[0-9]{1,3}$"), (string)json!["choices"]![0]!["message"]!["content"]!);

        string[] choices = ["yes", "no", "maybe so"];
        (status, json) = await _server.PostAsync("/v1/completions", new { prompt = "Answer:", max_tokens = 10, n = 4, seed = 5, temperature = 1.0, guided_choice = choices });
        Assert.Equal(200, status);
        Assert.All(json!["choices"]!.AsArray(), c =>
        {
            Assert.Contains((string)c!["text"]!, choices);
            Assert.Equal("stop", (string)c["finish_reason"]!);
        });

        (status, json) = await _server.PostAsync("/v1/completions", new { prompt = "JSON:", max_tokens = 120, seed = 9, temperature = 1.0, structured_outputs = new { json = JsonNode.Parse(Weather) } });
        Assert.Equal(200, status);
        var choice = json!["choices"]![0]!;
        AssertValidOrCutShort(Weather, (string)choice["text"]!, (string)choice["finish_reason"]! == "stop");

        (status, json) = await _server.PostAsync(Chat, new { messages = new[] { new { role = "user", content = "x" } }, max_tokens = 120, seed = 9, chat_template_kwargs = new { enable_thinking = false }, structured_outputs = new { choice = new[] { "left", "right" } } });
        Assert.Equal(200, status);
        Assert.Contains((string)json!["choices"]![0]!["message"]!["content"]!, new[] { "left", "right" });
        await _server.AssertEngineIdleAsync();
    }

    private static string WithSchema(string schema) => """{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":""" + schema + "}}}";

    public static TheoryData<string, string> Unsupported => new()
    {
        { """{"type":"string","pattern":"^a+$"}""", "pattern" },
        { """{"not":{"type":"null"}}""", "not" },
        { """{"type":"array","items":{"type":"integer"},"uniqueItems":true}""", "uniqueItems" },
        { """{"type":"string","format":"uri"}""", "format" },
        { """{"allOf":[{"type":"object"},{"required":["a"]}]}""", "allOf" },
        { """{"type":"object","properties":{"a":{"type":"object","minProperties":1}}}""", "minProperties" },
        { """{"oneOf":[{"type":"integer"},{"type":"number"}]}""", "oneOf" },
    };

    [Theory]
    [MemberData(nameof(Unsupported))]
    public async Task AnUnsupportedKeywordIsA400NamingIt(string schema, string keyword)
    {
        var (status, json) = await _server.PostAsync(Chat, WithSchema(schema));
        Assert.Equal(400, status);
        var error = json!["error"]!;
        Assert.Equal("unsupported_parameter", (string?)error["code"]);
        Assert.Equal("response_format", (string?)error["param"]);
        Assert.Contains($"'{keyword}'", (string)error["message"]!, StringComparison.Ordinal);
    }

    public static TheoryData<string> Invalid => new()
    {
        """{"type":"strin"}""",
        """{"type":"object","required":"name"}""",
        """{"type":"object","properties":{"a":{"$ref":"#/$defs/missing"}}}""",
        """{"type":"string","minLength":-1}""",
        """{"type":"object","properties":{"a":42}}""",
        """{"type":"string","minLength":3,"maxLength":1}""",
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public async Task ASchemaThatIsNotValidJsonSchemaIsA400OnResponseFormat(string schema)
    {
        var (status, json) = await _server.PostAsync(Chat, WithSchema(schema));
        Assert.Equal(400, status);
        Assert.Equal("response_format", (string?)json!["error"]!["param"]);
        Assert.Equal("invalid_request_error", (string?)json["error"]!["type"]);
    }

    public static TheoryData<string, string, string?> OtherRefusals => new()
    {
        // body fields after "messages", param, code
        { """ "guided_json": {"type": "strin"} """, "guided_json", null },
        { """ "guided_json": 5 """, "guided_json", null },
        { """ "guided_regex": "(a)\\1" """, "guided_regex", "unsupported_parameter" },
        { """ "guided_choice": [] """, "guided_choice", null },
        { """ "guided_grammar": "root ::= x" """, "guided_grammar", "unsupported_parameter" },
        { """ "structured_outputs": {"grammar": "root ::= x"} """, "structured_outputs.grammar", "unsupported_parameter" },
        { """ "structured_outputs": {"json": {"type": "null"}, "regex": "a"} """, "structured_outputs", null },
        { """ "response_format": {"type": "json_object"}, "guided_regex": "a" """, "guided_regex", null },
        { """ "response_format": {"type": "json_object"}, "stop": ["}"] """, "stop", "unsupported_parameter" },
        { """ "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {}}}}], "tool_choice": "required" """, "tools", "unsupported_parameter" },
        { """ "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}} """, "tool_choice", null },
    };

    [Theory]
    [MemberData(nameof(OtherRefusals))]
    public async Task OtherStructuredOutputRefusalsNameTheirParameter(string fields, string param, string? code)
    {
        var (status, json) = await _server.PostAsync(Chat, $$"""{"messages":[{"role":"user","content":"hi"}], {{fields}} }""");
        Assert.Equal(400, status);
        Assert.Equal(param, (string?)json!["error"]!["param"]);
        Assert.Equal(code, (string?)json["error"]!["code"]);
    }
}

/// <summary>Semantic Kernel's structured output: ResponseFormat = typeof(T), the reply deserialised into T.</summary>
public sealed class SemanticKernelStructuredOutputTests
{
    public enum City
    {
        Paris,
        Oslo,
        Lima,
    }

    // Days is a long: the schema of a C# int has no bounds, and unbounded integers may have up to 16 digits.
    public sealed record Forecast(City City, long Days, bool Umbrella);

    [Fact]
    public async Task AStructuredReplyDeserialisesIntoTheRecord()
    {
        // Without a reasoning parser no think block is allowed, so the reply is the object alone.
        await using var server = await TestServer.StartAsync(new() { ["Server:ReasoningParser"] = "none" });
#pragma warning disable SKEXP0010 // a custom endpoint is SK's documented way to reach OpenAI-compatible servers
        var kernel = Kernel.CreateBuilder().AddOpenAIChatCompletion(TestModel.Name, server.V1, apiKey: "unused").Build();
#pragma warning restore SKEXP0010
        var chat = kernel.GetRequiredService<IChatCompletionService>();
        var history = new ChatHistory();
        history.AddUserMessage("The forecast, please.");
        var settings = new OpenAIPromptExecutionSettings { ResponseFormat = typeof(Forecast), Temperature = 1, Seed = 12, MaxTokens = 100 };

        var reply = await chat.GetChatMessageContentAsync(history, settings);
        var forecast = JsonSerializer.Deserialize<Forecast>(reply.Content!, new JsonSerializerOptions { Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } });
        Assert.NotNull(forecast);
        Assert.True(Enum.IsDefined(forecast.City));
        await server.AssertEngineIdleAsync();
    }
}
