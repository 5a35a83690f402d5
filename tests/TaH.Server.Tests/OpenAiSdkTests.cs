using System.ClientModel;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;
using TaH.Engine.TaH;
using TaH.Engine.Tests;

namespace TaH.Server.Tests;

/// <summary>The official OpenAI .NET SDK against the real server.</summary>
[Collection(ServerCollection.Name)]
public sealed class OpenAiSdkTests(SharedServer shared)
{
    private const string Question = "What is 17 * 23?";

    private readonly TestServer _server = shared.Server;

    private ChatClient Client(string key = "unused") =>
        new(TestModel.Name, new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = _server.V1 });

    [Fact]
    public async Task ChatGivesWhatTheEngineGivesDirectly()
    {
        var expected = Reference.Greedy(Reference.ChatPrompt(Question), 12);
        Assert.False(expected.Text.StartsWith("<think>", StringComparison.Ordinal)); // else the reasoning parser would take it

        var result = await Client().CompleteChatAsync([new UserChatMessage(Question)], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 });
        var completion = result.Value;

        Assert.Equal(expected.Text, completion.Content.Single().Text);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(TestModel.Name, completion.Model);
        Assert.Equal(Reference.ChatPrompt(Question).Count, completion.Usage.InputTokenCount);
        Assert.Equal(12, completion.Usage.OutputTokenCount);

        // The TaH extension rides along in the same body.
        var raw = JsonNode.Parse(result.GetRawResponse().Content.ToString())!;
        Assert.Equal(expected.Depths, raw["choices"]![0]!["tah"]!["depths"]!.AsArray().Select(d => (int)d!));
        Assert.Equal(expected.Depth2, (int)raw["usage"]!["tah"]!["depth2_tokens"]!);
        Assert.Equal(expected.Depths.Average(), (double)raw["usage"]!["tah"]!["average_depth"]!, 5);
    }

    [Fact]
    public async Task StreamingAddsUpToTheEnginesAnswer()
    {
        var expected = Reference.Greedy(Reference.ChatPrompt(Question), 16);
        var text = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (var update in Client().CompleteChatStreamingAsync([new UserChatMessage(Question)], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 16 }))
        {
            updates++;
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            finish = update.FinishReason ?? finish;
            usage = update.Usage ?? usage;
        }

        Assert.Equal(expected.Text, text.ToString());
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.True(updates > 2, $"only {updates} updates: not streamed");
        Assert.NotNull(usage); // the SDK asks for stream_options.include_usage
        Assert.Equal(16, usage.OutputTokenCount);
    }

    [Fact]
    public async Task ToolsAndToolResultsInTheHistoryAreRenderedByTheTemplate()
    {
        var tool = ChatTool.CreateFunctionTool("get_weather", "Current weather in a city",
            BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"""));
        var call = ChatToolCall.CreateFunctionToolCall("call_1", "get_weather", BinaryData.FromString("""{"city":"Paris"}"""));
        List<OpenAI.Chat.ChatMessage> history =
        [
            new UserChatMessage("Weather in Paris?"),
            new AssistantChatMessage([call]),
            new ToolChatMessage("call_1", """{"temperature": 21}"""),
        ];
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 6, Tools = { tool } };
        var completion = (await Client().CompleteChatAsync(history, options)).Value;

        // The same conversation rendered here, through the engine's ChatMessage/ToolCall and the Qwen3 template.
        var toolJson = JsonNode.Parse("""{"type":"function","function":{"name":"get_weather","description":"Current weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}""")!;
        var prompt = Reference.ChatPrompt(
            [
                Engine.Tokenization.ChatMessage.User("Weather in Paris?"),
                Engine.Tokenization.ChatMessage.Assistant(null, [new Engine.Tokenization.ToolCall("get_weather", JsonNode.Parse("""{"city":"Paris"}""")) { Id = "call_1" }]),
                Engine.Tokenization.ChatMessage.Tool("""{"temperature": 21}""", "call_1"),
            ],
            [toolJson]);
        Assert.Equal(prompt.Count, completion.Usage.InputTokenCount);
        Assert.Equal(Reference.Greedy(prompt, 6).Text, completion.Content.Single().Text);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
    }

    // A random model never calls a tool by itself, so the call is prefilled: the request continues
    // an assistant message that holds a Qwen3 tool call (vLLM's continue_final_message, with echo),
    // and the server parses prefill + continuation like any output.
    [Fact]
    public async Task AToolCallInTheOutputReachesTheSdkAsToolCalls()
    {
        var options = ToolCallOptions();
        var completion = (await Client().CompleteChatAsync(ToolCallHistory(), options)).Value;

        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        var call = Assert.Single(completion.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.StartsWith("call_", call.Id, StringComparison.Ordinal);
        using var arguments = JsonDocument.Parse(call.FunctionArguments);
        Assert.Equal("Paris", arguments.RootElement.GetProperty("city").GetString());
        Assert.Equal(1, completion.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task AToolCallStreamsToTheSdk()
    {
        string? name = null, id = null;
        var arguments = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in Client().CompleteChatStreamingAsync(ToolCallHistory(), ToolCallOptions()))
        {
            foreach (var call in update.ToolCallUpdates)
            {
                Assert.Equal(0, call.Index);
                name ??= call.FunctionName;
                id ??= call.ToolCallId;
                arguments.Append(call.FunctionArgumentsUpdate?.ToString());
            }

            finish = update.FinishReason ?? finish;
        }

        Assert.Equal("get_weather", name);
        Assert.NotNull(id);
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
        using var parsed = JsonDocument.Parse(arguments.ToString());
        Assert.Equal("Paris", parsed.RootElement.GetProperty("city").GetString());
    }

    [Fact]
    public async Task LogprobsAreTheEnginesAndSeededChoicesRepeat()
    {
        var expected = Reference.Greedy(Reference.ChatPrompt(Question), 5, logprobs: 3);
        var greedy = (await Client().CompleteChatAsync([new UserChatMessage(Question)],
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 })).Value;
        Assert.Equal(5, greedy.ContentTokenLogProbabilities.Count);
        for (int i = 0; i < 5; i++)
        {
            var token = greedy.ContentTokenLogProbabilities[i];
            // logit - log-sum-exp: two logits' error, from sums the server may order otherwise (prefix hits).
            Assert.InRange(token.LogProbability, expected.Events[i].Sample.Logprob - (2 * Fp32Tolerance.ReductionOrder), expected.Events[i].Sample.Logprob + (2 * Fp32Tolerance.ReductionOrder));
            Assert.Equal(3, token.TopLogProbabilities.Count);
            Assert.Equal(Reference.Tokenizer.TokenBytes(expected.Events[i].Token).ToArray(), token.Utf8Bytes!.Value.ToArray());
        }

        // n = 2 with a seed: two choices, the same again on a second request.
        async Task<string[]> Sample()
        {
            var body = new { model = TestModel.Name, messages = new[] { new { role = "user", content = Question } }, max_tokens = 8, temperature = 1.0, seed = 42, n = 2 };
            var (status, json) = await _server.PostAsync("/v1/chat/completions", body);
            Assert.Equal(200, status);
            return [.. json!["choices"]!.AsArray().OrderBy(c => (int)c!["index"]!).Select(c => (string)c!["message"]!["content"]!)];
        }

        var first = await Sample();
        Assert.Equal(2, first.Length);
        Assert.Equal(first, await Sample());
    }

    [Fact]
    public async Task PolicyIsChosenPerRequest()
    {
        async Task<JsonNode> Run(string policy)
        {
            var (status, json) = await _server.PostAsync("/v1/chat/completions",
                new { messages = new[] { new { role = "user", content = Question } }, max_tokens = 6, temperature = 0, tah = new { policy } });
            Assert.Equal(200, status);
            return json!;
        }

        var always = await Run("always");
        var never = await Run("never");
        Assert.All(always["choices"]![0]!["tah"]!["depths"]!.AsArray(), d => Assert.Equal(2, (int)d!));
        Assert.All(never["choices"]![0]!["tah"]!["depths"]!.AsArray(), d => Assert.Equal(1, (int)d!));
        Assert.Equal(1.0, (double)always["usage"]!["tah"]!["depth2_share"]!);
        Assert.Equal("never", (string)never["usage"]!["tah"]!["policy"]!);
        Assert.Equal(Reference.Greedy(Reference.ChatPrompt(Question), 6, IterationPolicy.Always).Text, (string)always["choices"]![0]!["message"]!["content"]!);
    }

    [Fact]
    public async Task AWrongModelNameIsRefusedThroughTheSdk()
    {
        var client = new ChatClient("gpt-4o", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = _server.V1 });
        var e = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(404, e.Status); // as OpenAI and vLLM answer an unknown model
        Assert.Contains("model_not_found", e.Message, StringComparison.Ordinal);
    }

    private static List<OpenAI.Chat.ChatMessage> ToolCallHistory() =>
    [
        new UserChatMessage("What is the weather in Paris?"),
        new AssistantChatMessage("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"),
    ];

    private static ChatCompletionOptions ToolCallOptions()
    {
        var options = new ChatCompletionOptions
        {
            Temperature = 0,
            MaxOutputTokenCount = 1,
            Tools =
            {
                ChatTool.CreateFunctionTool("get_weather", "Current weather in a city",
                    BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}}}""")),
            },
        };
#pragma warning disable SCME0001 // extra body fields: the SDK's documented way to send vLLM's parameters
        options.Patch.Set("$.continue_final_message"u8, true);
        options.Patch.Set("$.add_generation_prompt"u8, false);
        options.Patch.Set("$.echo"u8, true);
#pragma warning restore SCME0001
        return options;
    }
}
