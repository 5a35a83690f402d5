using System.Text;
using TaH.Engine.Tokenization;

namespace TaH.Engine.Tests.Tokenization;

public class IncrementalDetokenizerTests
{
    private static TextTokenizer Tok => TokenizerFixtures.Qwen3;

    [Fact]
    public void TokenByTokenEqualsDecodeOverTheGoldenEncodeCases()
    {
        foreach (var path in new[] { TokenizerFixtures.GoldenPath, TokenizerFixtures.ExtraGoldenPath })
        {
            foreach (var item in TokenizerFixtures.Section(path, "encode"))
            {
                var ids = TokenizerFixtures.Ids(item["ids"]);
                foreach (var skip in new[] { false, true })
                {
                    var pieces = Stream(ids, skip);
                    Assert.Equal(Tok.Decode(ids, skip), string.Concat(pieces));
                    Assert.All(pieces, AssertWholeCharacters);
                }
            }
        }
    }

    [Fact]
    public void TokenByTokenEqualsDecodeOverRandomByteTokens()
    {
        var byteIds = Enumerable.Range(0, 256).Select(b => Tok.TokenToId(ByteToken((byte)b))!.Value).ToArray();
        var random = new Random(1234);
        for (var n = 0; n < 500; n++)
        {
            var ids = new List<int>();
            var length = random.Next(1, 24);
            for (var k = 0; k < length; k++)
            {
                ids.Add(random.Next(10) switch
                {
                    < 6 => byteIds[random.Next(0x80, 0x100)], // continuation and lead bytes
                    < 8 => byteIds[random.Next(0, 0x80)],
                    8 => 151643 + random.Next(26), // added tokens, special or not
                    _ => random.Next(151643),
                });
            }
            foreach (var skip in new[] { false, true })
            {
                var pieces = Stream(ids, skip);
                Assert.Equal(Tok.Decode(ids, skip), string.Concat(pieces));
                Assert.All(pieces, AssertWholeCharacters);
            }
        }
    }

    [Fact]
    public void MultiByteCharacterIsHeldBackUntilComplete()
    {
        var emoji = "🙂"; // F0 9F 99 82, one byte token each
        var ids = Encoding.UTF8.GetBytes(emoji).Select(b => Tok.TokenToId(ByteToken(b))!.Value).ToList();
        var detok = Tok.CreateDetokenizer();
        Assert.Equal("", detok.Add(ids[0]));
        Assert.Equal("", detok.Add(ids[1]));
        Assert.Equal("", detok.Add(ids[2]));
        Assert.Equal(emoji, detok.Add(ids[3]));
        Assert.Equal("", detok.Flush());
    }

    [Fact]
    public void BytesThatCannotCompleteBecomeReplacementCharacters()
    {
        var detok = Tok.CreateDetokenizer();
        Assert.Equal("", detok.Add(Tok.TokenToId(ByteToken(0xE4))!.Value)); // could still become 中
        Assert.Equal("\uFFFDA", detok.Add(Tok.TokenToId("A")!.Value));
        Assert.Equal("", detok.Add(Tok.TokenToId(ByteToken(0xF0))!.Value));
        Assert.Equal("\uFFFD", detok.Flush());
        Assert.Equal("\uFFFD", detok.Add(Tok.TokenToId(ByteToken(0xFF))!.Value)); // never valid: out at once
        Assert.Equal("ok", detok.Add(Tok.Encode("ok")));
    }

    [Fact]
    public void SpecialTokensCanBeSkipped()
    {
        var ids = Tok.Encode("<|im_start|>assistant\n<think>\nhm\n</think>\n\nHi!<|im_end|>");
        Assert.Equal("<|im_start|>assistant\n<think>\nhm\n</think>\n\nHi!<|im_end|>", string.Concat(Stream(ids, false)));
        // <think> is an added token but not special, so it stays.
        Assert.Equal("assistant\n<think>\nhm\n</think>\n\nHi!", string.Concat(Stream(ids, true)));
    }

    private static List<string> Stream(IReadOnlyList<int> ids, bool skip)
    {
        var detok = Tok.CreateDetokenizer(skip);
        var pieces = ids.Select(detok.Add).ToList();
        pieces.Add(detok.Flush());
        return pieces;
    }

    private static void AssertWholeCharacters(string piece)
    {
        for (var i = 0; i < piece.Length; i++)
        {
            if (char.IsHighSurrogate(piece[i]))
            {
                Assert.True(i + 1 < piece.Length && char.IsLowSurrogate(piece[i + 1]), "piece ends inside a surrogate pair");
                i++;
            }
            else
            {
                Assert.False(char.IsLowSurrogate(piece[i]), "piece starts inside a surrogate pair");
            }
        }
    }

    // GPT-2's byte-to-character map, written out independently of the engine's.
    internal static string ByteToken(byte b)
    {
        var printable = b is >= (byte)'!' and <= (byte)'~' or >= 0xA1 and <= 0xAC or >= 0xAE;
        if (printable)
        {
            return ((char)b).ToString();
        }
        var n = 0;
        for (var x = 0; x < b; x++)
        {
            if (!(x is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE))
            {
                n++;
            }
        }
        return ((char)(256 + n)).ToString();
    }
}
