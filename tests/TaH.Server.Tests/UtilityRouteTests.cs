using System.Text.Json.Nodes;

namespace TaH.Server.Tests;

/// <summary>vLLM's utility routes over real HTTP, against the tokenizer's golden file (an independent JavaScript tokenizer and Jinja).</summary>
[Collection(ServerCollection.Name)]
public sealed class UtilityRouteTests(SharedServer shared)
{
    private static readonly JsonNode Golden = JsonNode.Parse(File.ReadAllText(Repo.Path("tests", "fixtures", "qwen3-tokenizer", "golden.json")))!;

    private readonly TestServer _server = shared.Server;

    [Fact]
    public async Task TokenizeAPromptAndDetokenizeItBack()
    {
        foreach (var item in Golden["encode"]!.AsArray().Take(3))
        {
            string text = (string)item!["text"]!;
            var ids = item["ids"]!.ToJsonString();
            var (status, json) = await _server.PostAsync("/tokenize", new { prompt = text, add_special_tokens = true, model = TestModel.Name });
            Assert.Equal(200, status);
            Assert.Equal(["count", "max_model_len", "tokens"], json!.AsObject().Select(p => p.Key));
            Assert.Equal(ids, json["tokens"]!.ToJsonString());
            Assert.Equal(item["ids"]!.AsArray().Count, (int)json["count"]!);
            Assert.Equal(2048, (int)json["max_model_len"]!); // the shared server's --max-model-len

            (status, json) = await _server.PostAsync("/detokenize", $$"""{"tokens": {{ids}}}""");
            Assert.Equal(200, status);
            Assert.Equal(text, (string)json!["prompt"]!);
        }
    }

    [Fact]
    public async Task TokenizeChatMessagesAsTheChatTemplateRendersThem()
    {
        foreach (var item in Golden["chat"]!.AsArray().Take(4))
        {
            var body = new JsonObject
            {
                ["messages"] = item!["messages"]!.DeepClone(),
                ["add_generation_prompt"] = (bool)item["add_generation_prompt"]!,
            };
            if (item["tools"] is { } tools)
            {
                body["tools"] = tools.DeepClone();
            }

            if (item["enable_thinking"] is { } thinking)
            {
                body["chat_template_kwargs"] = new JsonObject { ["enable_thinking"] = (bool)thinking };
            }

            var (status, json) = await _server.PostAsync("/tokenize", body.ToJsonString());
            Assert.True(status == 200, json?.ToJsonString());
            Assert.Equal(item["ids"]!.ToJsonString(), json!["tokens"]!.ToJsonString());
        }
    }

    [Fact]
    public async Task TokenStringsAreTheVocabularysSpelling()
    {
        // GPT-2 byte-level spelling: a leading space is 'Ġ'.
        var (status, json) = await _server.PostAsync("/tokenize", new { prompt = "Hello, my dog is cute", return_token_strs = true });
        Assert.Equal(200, status);
        Assert.Equal("""["Hello",",","Ġmy","Ġdog","Ġis","Ġcute"]""", json!["token_strs"]!.ToJsonString(new System.Text.Json.JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
    }

    [Fact]
    public async Task VersionAndTheModelsContext()
    {
        var version = JsonNode.Parse(await _server.Http.GetStringAsync("/version"))!;
        Assert.Matches(@"^\d+\.\d+", (string)version["version"]!);
        var models = JsonNode.Parse(await _server.Http.GetStringAsync("/v1/models"))!;
        Assert.Equal(2048, (int)models["data"]![0]!["max_model_len"]!);
    }

    [Theory]
    [InlineData("/tokenize", """{"prompt": "hi", "model": "other"}""", 404, "model", "model_not_found")]
    [InlineData("/tokenize", """{}""", 400, "prompt", null)]
    [InlineData("/tokenize", """{"messages": []}""", 400, "messages", null)]
    [InlineData("/tokenize", """{"messages": [{"role": "user", "content": "hi"}], "continue_final_message": true}""", 400, "continue_final_message", null)]
    [InlineData("/detokenize", """{"tokens": [1, -1]}""", 400, "tokens", null)]
    [InlineData("/detokenize", """{"tokens": [999999999]}""", 400, "tokens", null)]
    [InlineData("/detokenize", """{}""", 400, "tokens", null)]
    public async Task BadUtilityRequestsAreOpenAiErrors(string path, string body, int expected, string param, string? code)
    {
        var (status, json) = await _server.PostAsync(path, body);
        Assert.True(status == expected, json?.ToJsonString());
        ErrorTests.AssertOpenAiError(json!.ToJsonString(), "invalid_request_error", param, code);
    }
}
