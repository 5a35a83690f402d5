using System.Text;
using System.Text.RegularExpressions;
using TaH.Engine.Constraints;

namespace TaH.Engine.Tests.Constraints;

/// <summary>The regex compiler against .NET's own regex engine (full matches), through the real Qwen3 vocabulary's single-byte tokens.</summary>
public sealed class RegexTests
{
    private static readonly Lazy<int[]> ByteTokens = new(() =>
    {
        var v = Qwen3Vocabulary.Vocabulary;
        var ids = new int[256];
        for (int id = 0; id < v.TokenCount; id++)
        {
            if (v.Bytes(id).Length == 1 && !v.IsAdded(id))
            {
                ids[v.Bytes(id)[0]] = id;
            }
        }

        return ids;
    });

    /// <summary>Whether the constraint takes exactly these bytes, fed one byte-token at a time.</summary>
    private static bool Matches(Constraint c, byte[] bytes)
    {
        var m = c.CreateMatcher([Qwen3Vocabulary.ImEnd]);
        foreach (byte b in bytes)
        {
            if (!m.Accept(ByteTokens.Value[b]))
            {
                return false;
            }
        }

        return m.IsComplete;
    }

    /// <summary>A string the constraint allows, built byte by byte from its masks.</summary>
    private static byte[] Sample(Constraint c, Random random)
    {
        var m = c.CreateMatcher([Qwen3Vocabulary.ImEnd]);
        var bytes = new List<byte>();
        while (bytes.Count < 64)
        {
            var mask = m.ComputeMask();
            // Within the Basic Multilingual Plane: .NET matches UTF-16 units, this compiler code points.
            var next = Enumerable.Range(0, 0xF0).Where(b => mask.IsAllowed(ByteTokens.Value[b])).ToList();
            if (next.Count == 0 || (m.IsComplete && random.Next(3) == 0))
            {
                break;
            }

            byte chosen = (byte)next[random.Next(next.Count)];
            Assert.True(m.Accept(ByteTokens.Value[chosen]));
            bytes.Add(chosen);
        }

        return [.. bytes];
    }

    public static TheoryData<string> Patterns =>
    [
        "abc", "a|b|cd", "(ab)*c", "a+b?c{2,3}", "[a-f0-9]{4}", "[^a-z]x", "x.y", @"\d{3}-\d{2}", @"\w+@\w+\.com",
        @"\s*ok\s*", "(?:yes|no)!", "(?<word>[A-Z][a-z]*) end", "colou?r", "a{0,2}b{3}", "[-a]+", "[a\\-z]", @"\.\*\+\?",
        "é+ü", "[α-ω]{2}", "日本|中国", "[^\\n]{1,3}", "\\u0041\\x42", "(a|ab)(c|bcd)(d*)", "[0-9]+(\\.[0-9]+)?", "^start$",
        "a*?b", "(x|y){2,}", "[\\d\\s]+", "[^\\d]+",
    ];

    [Theory]
    [MemberData(nameof(Patterns))]
    public void AgreesWithDotNetRegex(string pattern)
    {
        var c = Qwen3Vocabulary.Compiler.Regex(pattern);
        var oracle = new Regex($"^(?:{pattern})\\z", RegexOptions.ECMAScript);
        var random = new Random(pattern.Length);

        // Strings the automaton writes are ones the oracle matches.
        for (int i = 0; i < 40; i++)
        {
            var bytes = Sample(c, random);
            string text = Encoding.UTF8.GetString(bytes);
            if (Matches(c, bytes))
            {
                Assert.True(oracle.IsMatch(text), $"/{pattern}/ wrote {text}, which .NET does not match");
            }
        }

        // Random strings over the pattern's own characters and some others: both agree.
        var alphabet = pattern.Where(ch => !"\\()[]{}|*+?^$".Contains(ch)).Concat("aZ09 _-.\nüé日x").Distinct().ToArray();
        for (int i = 0; i < 300; i++)
        {
            var text = new string([.. Enumerable.Range(0, random.Next(0, 8)).Select(_ => alphabet[random.Next(alphabet.Length)])]);
            Assert.True(oracle.IsMatch(text) == Matches(c, Encoding.UTF8.GetBytes(text)), $"/{pattern}/ and .NET disagree on {System.Text.Json.JsonSerializer.Serialize(text)} (.NET: {oracle.IsMatch(text)})");
        }
    }

    [Theory]
    [InlineData(@"(a)\1", "backreference")]
    [InlineData("a(?=b)", "lookaround")]
    [InlineData("(?<!a)b", "lookaround")]
    [InlineData(@"\bword\b", "word boundary")]
    [InlineData("(?i)abc", "inline flags")]
    [InlineData("a*+", "possessive")]
    [InlineData("(?>a)", "atomic")]
    [InlineData(@"\p{L}", "Unicode property")]
    [InlineData("a^b", "'^'")]
    [InlineData("a{1001}", "{n,m}")]
    public void RefusesWhatIsNotRegularByName(string pattern, string named)
    {
        var e = Assert.Throws<ConstraintException>(() => Qwen3Vocabulary.Compiler.Regex(pattern));
        Assert.Equal(ConstraintError.Unsupported, e.Error);
        Assert.Contains(named, e.Keyword + " " + e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("(ab")]
    [InlineData("ab)")]
    [InlineData("[a-")]
    [InlineData("*a")]
    [InlineData("[z-a]")]
    [InlineData("a{3,1}")]
    public void RefusesMalformedPatterns(string pattern)
    {
        var e = Assert.Throws<ConstraintException>(() => Qwen3Vocabulary.Compiler.Regex(pattern));
        Assert.Equal(ConstraintError.Invalid, e.Error);
        Assert.True(new Func<bool>(() =>
        {
            try
            {
                _ = new Regex(pattern);
                return false;
            }
            catch (ArgumentException)
            {
                return true;
            }
        })(), $".NET takes /{pattern}/ too");
    }
}
