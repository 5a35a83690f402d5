using System.Text.Json.Nodes;
using TaH.Engine.Checkpoints;
using TaH.Engine.Tokenization;

namespace TaH.Engine.Tests.Tokenization;

public class ChatTemplateTests
{
    private static string Qwen3Jinja =>
        TokenizerFixtures.ReadJson(Path.Combine(TokenizerFixtures.Qwen3Dir, "tokenizer_config.json"))["chat_template"]!.GetValue<string>();

    [Fact]
    public void TheEmbeddedQwen3TemplateIsTheFixturesTemplate()
    {
        Assert.Equal(Qwen3ChatTemplate.JinjaSource, Qwen3Jinja);
    }

    [Fact]
    public void FamiliesAreRecognisedFromTheJinjaText()
    {
        Assert.IsType<Qwen3ChatTemplate>(ChatTemplate.FromJinja(Qwen3Jinja, "cfg.json"));
        // Reindented or with Windows line ends: still Qwen3.
        var reindented = Qwen3Jinja.Replace("\n    ", "\n\t", StringComparison.Ordinal).Replace("\n", "\r\n", StringComparison.Ordinal);
        Assert.IsType<Qwen3ChatTemplate>(ChatTemplate.FromJinja(reindented, "cfg.json"));
        foreach (var item in TokenizerFixtures.Section(TokenizerFixtures.ExtraGoldenPath, "chatml"))
        {
            Assert.IsType<ChatMlChatTemplate>(ChatTemplate.FromJinja(item["template"]!.GetValue<string>(), "cfg.json"));
        }
    }

    [Theory]
    [InlineData(null, "has no chat template")]
    [InlineData("  ", "has no chat template")]
    [InlineData("{% for m in messages %}{{ m.content }}{% endfor %}", "not supported")]
    public void UnknownTemplatesAreRejectedNamingTheFile(string? text, string problem)
    {
        var e = Assert.Throws<CheckpointException>(() => ChatTemplate.FromJinja(text, "/models/x/tokenizer_config.json"));
        Assert.Equal("/models/x/tokenizer_config.json", e.FilePath);
        Assert.Contains(problem, e.Problem, StringComparison.Ordinal);
        Assert.StartsWith("/models/x/tokenizer_config.json: ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AChangedQwen3TemplateIsNotTakenForQwen3()
    {
        var changed = Qwen3Jinja.Replace("reasoning_content.strip('\\n')", "reasoning_content", StringComparison.Ordinal);
        Assert.NotEqual(Qwen3Jinja, changed);
        Assert.Throws<CheckpointException>(() => ChatTemplate.FromJinja(changed, "cfg.json"));
    }

    [Theory]
    [InlineData("chatml", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\nThe answer is")]
    [InlineData("qwen3", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nThe answer is")]
    public void TheFinalAssistantMessageCanBeLeftOpen(string family, string expected)
    {
        // Qwen3's template puts an empty think block before the last assistant turn after the last query.
        var template = ChatTemplate.ForFamily(family);
        Assert.Equal(expected, template.RenderContinuingFinal([ChatMessage.User("What is 2+2?"), ChatMessage.Assistant("The answer is")]));
        var e = Assert.Throws<ArgumentException>(() => template.RenderContinuingFinal([ChatMessage.User("What is 2+2?")]));
        Assert.Contains("assistant", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FamiliesCanBeChosenByName()
    {
        Assert.Equal("qwen3", ChatTemplate.ForFamily("Qwen3").Family);
        Assert.Equal("chatml", ChatTemplate.ForFamily(" chatml ").Family);
        var e = Assert.Throws<ArgumentException>(() => ChatTemplate.ForFamily("llama3"));
        Assert.Contains("qwen3, chatml", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ChatMlRendersAsTheJinjaReference()
    {
        var chatml = ChatTemplate.ForFamily("chatml");
        var count = 0;
        foreach (var item in TokenizerFixtures.Section(TokenizerFixtures.ExtraGoldenPath, "chatml"))
        {
            var messages = item["messages"]!.AsArray()
                .Select(m => new ChatMessage(m!["role"]!.GetValue<string>(), m["content"]!.GetValue<string>()))
                .ToList();
            var rendered = chatml.Render(messages, addGenerationPrompt: item["add_generation_prompt"]!.GetValue<bool>());
            Assert.Equal(item["rendered"]!.GetValue<string>(), rendered);
            count++;
        }
        Assert.Equal(10, count);
    }

    [Theory]
    [InlineData("qwen3")]
    [InlineData("chatml")]
    public void InvalidConversationsAreArgumentErrors(string family)
    {
        var template = ChatTemplate.ForFamily(family);
        Assert.Throws<ArgumentException>(() => template.Render([]));
        var e = Assert.Throws<ArgumentException>(() => template.Render([ChatMessage.User("hi"), new ChatMessage("developer", "x")]));
        Assert.Contains("message 1 has role 'developer'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Qwen3RendersToolCallsFromTheTypedApi()
    {
        var template = ChatTemplate.ForFamily("qwen3");
        var tools = new List<JsonNode> { JsonNode.Parse("""{"type":"function","function":{"name":"f","parameters":{"n":1.0}}}""")! };
        var messages = new List<ChatMessage>
        {
            ChatMessage.User("go"),
            ChatMessage.Assistant(null,
            [
                new ToolCall("f", JsonValue.Create("{\"raw\": 1}")) { Id = "c1" },
                new ToolCall("g", JsonNode.Parse("""{"b": [1, 2.5], "a": "é\n"}""")),
                new ToolCall("h", null),
            ]),
            ChatMessage.Tool("done", "c1"),
        };

        var text = template.Render(messages, tools, addGenerationPrompt: true, enableThinking: false);

        Assert.Equal(
            "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            + "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            + "{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"n\": 1}}}\n</tools>\n\n"
            + "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
            + "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\ngo<|im_end|>\n"
            // A null content renders as "" (the Jinja template itself would fail on it).
            + "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"raw\": 1}}\n</tool_call>\n"
            + "<tool_call>\n{\"name\": \"g\", \"arguments\": {\"b\": [1, 2.5], \"a\": \"é\\n\"}}\n</tool_call>\n"
            + "<tool_call>\n{\"name\": \"h\", \"arguments\": null}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\n<tool_response>\ndone\n</tool_response><|im_end|>\n"
            + "<|im_start|>assistant\n<think>\n\n</think>\n\n",
            text);
    }

    [Fact]
    public void Qwen3TrimsThinkBlocksWithJavaScriptWhiteSpace()
    {
        // @huggingface/jinja ignores the '\n' argument of strip/lstrip/rstrip (Python would keep
        // the spaces); the golden files follow the JavaScript.
        var text = ChatTemplate.ForFamily("qwen3").Render(
            [ChatMessage.User("q"), ChatMessage.Assistant("<think> \u3000r\t</think>\n \u00A0a")]);
        Assert.Equal("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nr\n</think>\n\na<|im_end|>\n", text);
    }
}
