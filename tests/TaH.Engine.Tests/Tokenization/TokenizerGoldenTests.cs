using System.Text.Json.Nodes;
using TaH.Checkpoints.Writing;
using TaH.Engine.Tokenization;

namespace TaH.Engine.Tests.Tokenization;

/// <summary>Encode, render and decode against the golden files made by the JavaScript reference.</summary>
public class TokenizerGoldenTests
{
    public static TheoryData<string, int> EncodeCases() => Cases("encode");

    public static TheoryData<string, int> ChatCases() => Cases("chat");

    [Theory]
    [MemberData(nameof(EncodeCases))]
    public void EncodeMatchesGolden(string file, int index)
    {
        var item = Item(file, "encode", index);
        var text = item["text"]!.GetValue<string>();
        Assert.Equal(TokenizerFixtures.Ids(item["ids"]), TokenizerFixtures.Qwen3.Encode(text));
    }

    [Theory]
    [MemberData(nameof(EncodeCases))]
    public void DecodeOfGoldenIdsGivesTheText(string file, int index)
    {
        // The extra file records the JavaScript decode (the text may not be in NFC); the public
        // file's texts are, so they decode to themselves.
        var item = Item(file, "encode", index);
        var expected = (item["decoded"] ?? item["text"])!.GetValue<string>();
        Assert.Equal(expected, TokenizerFixtures.Qwen3.Decode(TokenizerFixtures.Ids(item["ids"])));
    }

    [Theory]
    [MemberData(nameof(ChatCases))]
    public void ChatRenderAndIdsMatchGolden(string file, int index)
    {
        var item = Item(file, "chat", index);
        var input = new JsonObject { ["chat"] = new JsonArray(item.DeepClone()) };
        input["chat"]![0]!.AsObject().Remove("rendered");
        input["chat"]![0]!.AsObject().Remove("ids");

        var filled = TokenizerGoldenFile.Fill(input, TokenizerFixtures.Qwen3)["chat"]![0]!;

        Assert.Equal(item["rendered"]!.GetValue<string>(), filled["rendered"]!.GetValue<string>());
        Assert.Equal(TokenizerFixtures.Ids(item["ids"]), TokenizerFixtures.Ids(filled["ids"]));
    }

    [Fact]
    public void DecodeMatchesJavaScriptOnRandomByteTokens()
    {
        var checkedCases = 0;
        foreach (var item in TokenizerFixtures.Section(TokenizerFixtures.ExtraGoldenPath, "decode"))
        {
            var ids = TokenizerFixtures.Ids(item["ids"]);
            var skip = item["skip_special_tokens"]!.GetValue<bool>();
            Assert.Equal(item["text"]!.GetValue<string>(), TokenizerFixtures.Qwen3.Decode(ids, skip));
            checkedCases++;
        }
        Assert.True(checkedCases >= 40);
    }

    [Fact]
    public void NfcMatchesJavaScriptNormalize()
    {
        foreach (var item in TokenizerFixtures.Section(TokenizerFixtures.ExtraGoldenPath, "nfc"))
        {
            var text = item["text"]!.GetValue<string>();
            Assert.Equal(item["nfc"]!.GetValue<string>(), text.Normalize(System.Text.NormalizationForm.FormC));
        }
    }

    [Theory]
    [InlineData("golden")]
    [InlineData("extra")]
    public void FillReproducesTheWholeGoldenFile(string file)
    {
        var golden = TokenizerFixtures.ReadJson(PathOf(file));
        var input = golden.DeepClone().AsObject();
        foreach (var item in input["encode"]!.AsArray())
        {
            item!.AsObject().Remove("ids");
        }
        foreach (var item in input["chat"]!.AsArray())
        {
            item!.AsObject()["rendered"] = "stale";
            item.AsObject().Remove("ids");
        }

        var filled = TokenizerGoldenFile.Fill(input, TokenizerFixtures.Qwen3);

        // Every field, including the ones Fill does not touch, comes back as in the golden file.
        Assert.True(JsonNode.DeepEquals(golden, filled));
        Assert.Equal("stale", input["chat"]![0]!["rendered"]!.GetValue<string>()); // the input is not modified
    }

    private static TheoryData<string, int> Cases(string section)
    {
        var data = new TheoryData<string, int>();
        foreach (var file in new[] { "golden", "extra" })
        {
            var count = TokenizerFixtures.ReadJson(PathOf(file))[section]!.AsArray().Count;
            for (var i = 0; i < count; i++)
            {
                data.Add(file, i);
            }
        }
        return data;
    }

    private static string PathOf(string file) => file == "golden" ? TokenizerFixtures.GoldenPath : TokenizerFixtures.ExtraGoldenPath;

    private static JsonObject Item(string file, string section, int index) =>
        TokenizerFixtures.ReadJson(PathOf(file))[section]![index]!.AsObject();
}
