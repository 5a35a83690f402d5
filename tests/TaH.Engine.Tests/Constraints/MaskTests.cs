using System.Text;
using TaH.Engine.Constraints;
using TaH.Engine.Tokenization;
using Xunit.Abstractions;

namespace TaH.Engine.Tests.Constraints;

/// <summary>The real Qwen3 vocabulary, indexed once for the constraint tests.</summary>
internal static class Qwen3Vocabulary
{
    private static readonly Lazy<TextTokenizer> LazyTokenizer = new(() => TextTokenizer.Load(Fixtures.Directory("qwen3-tokenizer")));
    private static readonly Lazy<ConstraintCompiler> LazyCompiler = new(() => new ConstraintCompiler(TokenVocabulary.Create(Tokenizer, ModelVocabSize)));

    /// <summary>Qwen3's lm_head size, past the tokenizer's 151,669 entries.</summary>
    public const int ModelVocabSize = 151936;

    public const int ImEnd = 151645;

    public static TextTokenizer Tokenizer => LazyTokenizer.Value;

    public static ConstraintCompiler Compiler => LazyCompiler.Value;

    public static TokenVocabulary Vocabulary => Compiler.Vocabulary;

    public static string Text(IEnumerable<int> tokens) => Encoding.UTF8.GetString(tokens.SelectMany(t => Vocabulary.Bytes(t).ToArray()).ToArray());
}

/// <summary>
/// The mask a matcher computes (precomputed token classes, shared checks, string tables) against
/// the brute-force answer (every token of the vocabulary run through a copy of the matcher, byte
/// by byte), on random walks through each constraint.
/// </summary>
public sealed class MaskTests(ITestOutputHelper output)
{
    private static readonly int[] End = [Qwen3Vocabulary.ImEnd];

    /// <summary>Ids the brute force must try: every token the tokenizer knows, and one past it.</summary>
    private static IEnumerable<int> AllIds() => Enumerable.Range(0, Qwen3Vocabulary.Vocabulary.TokenCount + 1);

    private static List<int> BruteForce(ConstraintMatcher m) => [.. AllIds().Where(id => m.Clone().Accept(id))];

    /// <summary>Walks choosing uniformly among allowed tokens; returns each walk's tokens and whether it ended.</summary>
    private static List<(List<int> Tokens, bool Ended)> Walk(Constraint c, int walks, int steps, int seed, Action<ConstraintMatcher, TokenMask, List<int>, int>? check = null)
    {
        var rng = new Random(seed);
        var result = new List<(List<int>, bool)>();
        for (int w = 0; w < walks; w++)
        {
            var m = c.CreateMatcher(End);
            var tokens = new List<int>();
            for (int step = 0; step < steps && !m.IsEnded; step++)
            {
                var mask = m.ComputeMask();
                check?.Invoke(m, mask, tokens, step);
                var allowed = mask.Allowed().ToArray();
                Assert.True(allowed.Length > 0, $"{c.Description}: nothing allowed after {Escape(Qwen3Vocabulary.Text(tokens))}");
                int pick = allowed[rng.Next(allowed.Length)];
                Assert.True(m.Accept(pick), $"{c.Description}: the mask allows {pick} but the matcher refuses it after {Escape(Qwen3Vocabulary.Text(tokens))}");
                tokens.Add(pick);
            }

            result.Add((tokens, m.IsEnded));
        }

        return result;
    }

    private static string Escape(string s) => System.Text.Json.JsonSerializer.Serialize(s);

    [Fact]
    public void EveryCorpusSchemaHasNoDeadEnds()
    {
        var compiler = Qwen3Vocabulary.Compiler;
        foreach (var (name, schema) in SchemaValidityTests.Corpus)
        {
            var c = compiler.JsonSchema(schema);
            foreach (var (tokens, ended) in Walk(c, walks: 4, steps: 120, seed: name.Length))
            {
                if (ended)
                {
                    Assert.Equal(Qwen3Vocabulary.ImEnd, tokens[^1]);
                }
            }
        }
    }

    [Theory]
    [InlineData("""{"type":"object","properties":{"name":{"type":"string","maxLength":5},"n":{"type":"integer","minimum":-3,"maximum":40},"tags":{"type":"array","items":{"type":"string","minLength":2,"maxLength":4},"minItems":1,"maxItems":2}},"required":["name","n","tags"],"additionalProperties":false}""")]
    [InlineData("""{"type":"object","additionalProperties":{"type":"boolean"},"properties":{"id":{"type":"integer","minimum":0,"maximum":9}},"required":["id"]}""")]
    [InlineData("""{"anyOf":[{"type":"number"},{"type":"string","format":"date-time"},{"type":"array","items":{"$ref":"#"},"maxItems":2}]}""")]
    public void SchemaMasksEqualBruteForce(string schema) => CompareWithBruteForce(Qwen3Vocabulary.Compiler.JsonSchema(schema), walks: 2, checkedSteps: 6);

    [Fact]
    public void JsonObjectMasksEqualBruteForce() => CompareWithBruteForce(Qwen3Vocabulary.Compiler.JsonObject(), walks: 3, checkedSteps: 6);

    [Fact]
    public void ToolCallAndThinkingMasksEqualBruteForce()
    {
        var tools = new[] { new ToolSpec("get_weather", """{"type":"object","properties":{"city":{"enum":["Paris","Oslo"]}},"required":["city"]}"""), new ToolSpec("noop", null) };
        CompareWithBruteForce(Qwen3Vocabulary.Compiler.ToolCalls(tools, multiple: true, allowThinking: true), walks: 2, checkedSteps: 5);
    }

    private void CompareWithBruteForce(Constraint c, int walks, int checkedSteps)
    {
        int compared = 0;
        Walk(c, walks, steps: 40, seed: 5, check: (m, mask, tokens, step) =>
        {
            // A few steps along each walk, and the first one of each walk, against every token.
            if (step >= checkedSteps)
            {
                return;
            }

            var expected = BruteForce(m);
            var actual = mask.Allowed().ToList();
            var extra = actual.Except(expected).Take(5).Select(id => Escape(Qwen3Vocabulary.Text([id])));
            var missing = expected.Except(actual).Take(5).Select(id => Escape(Qwen3Vocabulary.Text([id])));
            Assert.True(expected.SequenceEqual(actual), $"{c.Description} after {Escape(Qwen3Vocabulary.Text(tokens))}: mask {actual.Count}, brute force {expected.Count}; extra [{string.Join(", ", extra)}], missing [{string.Join(", ", missing)}]");
            compared++;
        });
        output.WriteLine($"{c.Description}: {compared} masks equal to brute force");
        Assert.True(compared >= walks);
    }
}
