using System.Text.Json;
using TaH.Engine.Constraints;

namespace TaH.Engine.Tests.Constraints;

/// <summary>Behaviours of the matcher on the real Qwen3 vocabulary: think blocks, tags as tokens, distinct keys, the end.</summary>
public sealed class MatcherTests
{
    private static readonly int[] End = [Qwen3Vocabulary.ImEnd];

    private static int Id(string token) => Qwen3Vocabulary.Vocabulary.AddedToken(token) ?? throw new InvalidOperationException(token);

    /// <summary>The ordinary token with exactly these bytes.</summary>
    private static int Single(string text)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        var v = Qwen3Vocabulary.Vocabulary;
        return Enumerable.Range(0, v.TokenCount).Single(id => !v.IsAdded(id) && v.Bytes(id).SequenceEqual(bytes));
    }

    private static void Feed(ConstraintMatcher m, string text)
    {
        foreach (int id in Qwen3Vocabulary.Tokenizer.Encode(text))
        {
            Assert.True(m.Accept(id), $"refused {JsonSerializer.Serialize(Qwen3Vocabulary.Text([id]))} of {JsonSerializer.Serialize(text)}");
        }
    }

    [Fact]
    public void AThinkBlockMayComeFirstAndTheConstraintAppliesAfterIt()
    {
        const string Schema = """{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"],"additionalProperties":false}""";
        int think = Id("<think>"), endThink = Id("</think>");
        Assert.False(Qwen3Vocabulary.Compiler.JsonSchema(Schema).CreateMatcher(End).ComputeMask().IsAllowed(think));

        var m = Qwen3Vocabulary.Compiler.JsonSchema(Schema, allowThinking: true).CreateMatcher(End);
        var start = m.ComputeMask();
        Assert.True(start.IsAllowed(think));
        Assert.True(start.IsAllowed(Single("{")));
        Assert.False(start.IsAllowed(Qwen3Vocabulary.ImEnd));

        Assert.True(m.Accept(think));
        var thinking = m.ComputeMask();
        Assert.True(thinking.IsAllowed(endThink));
        Assert.True(thinking.IsAllowed(Single(" anything")));
        Assert.False(thinking.IsAllowed(Qwen3Vocabulary.ImEnd)); // no end inside the block
        Assert.False(thinking.IsAllowed(Id("<tool_call>"))); // nor other added tokens
        Assert.Equal(Qwen3Vocabulary.Vocabulary.TokenCount - 26 + 1, thinking.Count); // every ordinary token, and </think>

        Feed(m, "Let me see.\n");
        Assert.True(m.Accept(endThink));
        var after = m.ComputeMask();
        Assert.True(after.IsAllowed(Single("\n\n")));
        Assert.False(after.IsAllowed(think));
        Assert.False(after.IsAllowed(Single("Hello")));
        Feed(m, "\n\n{\"ok\": true}");
        Assert.True(m.IsComplete);
        Assert.Equal([Qwen3Vocabulary.ImEnd], m.ComputeMask().Allowed());
    }

    [Fact]
    public void ToolCallTagsAreTheirAddedTokens()
    {
        var m = Qwen3Vocabulary.Compiler.ToolCalls([new ToolSpec("f", """{"type":"object","properties":{"x":{"type":"integer","minimum":0,"maximum":9}},"required":["x"]}""")], multiple: true).CreateMatcher(End);
        Assert.Equal([Id("<tool_call>")], m.ComputeMask().Allowed());
        Assert.True(m.Accept(Id("<tool_call>")));
        Feed(m, "\n{\"name\": \"f\", \"arguments\": {\"x\": 4}}\n");
        Assert.Equal([Id("</tool_call>")], m.ComputeMask().Allowed());
        Assert.True(m.Accept(Id("</tool_call>")));

        // Then the end, or another call after a new line.
        var after = m.ComputeMask();
        Assert.True(after.IsAllowed(Qwen3Vocabulary.ImEnd));
        Assert.True(after.IsAllowed(Single("\n")));
        Assert.Equal(2, after.Count);
    }

    [Fact]
    public void AnObjectNeverRepeatsAKey()
    {
        int quote = Single("\""), quoteColon = Single("\":");
        var m = Qwen3Vocabulary.Compiler.JsonObject().CreateMatcher(End);
        Feed(m, "{\"ab\": 1, \"a");
        var mask = m.ComputeMask();
        Assert.True(mask.IsAllowed(quote), "\"a\" is a new key");
        Assert.True(mask.IsAllowed(quoteColon));
        Feed(m, "b");
        mask = m.ComputeMask();
        Assert.False(mask.IsAllowed(quote), "closing the key as \"ab\" again");
        Assert.False(mask.IsAllowed(quoteColon));
        Assert.False(m.Clone().Accept(quote));
        Assert.True(mask.IsAllowed(Single("c")));
        Feed(m, "c\": 2}");
        Assert.True(m.IsComplete);
    }

    [Fact]
    public void FreeKeysAvoidTheListedProperties()
    {
        int quote = Single("\"");
        var m = Qwen3Vocabulary.Compiler.JsonSchema("""{"type":"object","properties":{"id":{"type":"integer","minimum":0,"maximum":9},"name":{"type":"null"}},"required":["id"],"additionalProperties":{"type":"boolean"}}""").CreateMatcher(End);
        Feed(m, "{\"id\": 1, \"");
        Assert.True(m.ComputeMask().IsAllowed(Single("name")), "the listed property comes as a literal");
        Feed(m, "id");
        var mask = m.ComputeMask();
        Assert.False(mask.IsAllowed(quote), "\"id\" is listed: not a free key");
        Assert.True(mask.IsAllowed(Single("x")));
    }

    [Fact]
    public void StopTokensAreOnlyAllowedAtTheEnd()
    {
        int brace = Single("}");
        var m = Qwen3Vocabulary.Compiler.JsonSchema("""{"type":"object","additionalProperties":false}""").CreateMatcher([Qwen3Vocabulary.ImEnd, brace]);
        Assert.True(m.Accept(Single("{")));
        Assert.False(m.ComputeMask().IsAllowed(brace)); // it would end the sequence at once
        Assert.False(m.Accept(Qwen3Vocabulary.ImEnd));
    }

    [Fact]
    public void ClonesGoTheirOwnWays()
    {
        var m = Qwen3Vocabulary.Compiler.JsonSchema("""{"enum":["left","right"]}""").CreateMatcher(End);
        var other = m.Clone();
        Feed(m, "\"left\"");
        Feed(other, "\"right\"");
        Assert.True(m.IsComplete && other.IsComplete);
        Assert.False(m.Clone().Accept(Single("\"")));
    }

    [Fact]
    public void NestingPastTheStackLimitEndsTheOutputCutShort()
    {
        // Arrays of at least one item, each null or such an array: ever deeper until the limit.
        var m = Qwen3Vocabulary.Compiler.JsonSchema("""{"anyOf":[{"type":"null"},{"type":"array","items":{"$ref":"#"},"minItems":1}]}""").CreateMatcher(End);
        int open = Single("["), opened = 0;
        while (m.ComputeMask().IsAllowed(open))
        {
            Assert.True(m.Accept(open));
            opened++;
        }

        Assert.InRange(opened, 1000, 10_000);
        Assert.False(m.IsComplete);
        Assert.True(m.Accept(Single(" "))); // the innermost array can only take an item now, and cannot
        Assert.Equal([Qwen3Vocabulary.ImEnd], m.ComputeMask().Allowed());
        Assert.True(m.Accept(Qwen3Vocabulary.ImEnd));
        Assert.True(m.IsCutShort);
    }
}
