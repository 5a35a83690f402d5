using TaH.Engine.Constraints;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Engine.Tokenization;
using TaH.Server.Api.Planning;

namespace TaH.Server.Tests;

/// <summary>The engine gate's refusal of a structured output, as the 400 names it: by the parameter that asked for it.</summary>
public sealed class WireNamesTests
{
    [Theory]
    [InlineData(null, "response_format")]
    [InlineData("tools", "tools")]
    [InlineData("guided_json", "guided_json")]
    public void AConstraintRefusalNamesTheParameterThatAskedForIt(string? asked, string param)
    {
        // Compiled for the demo model's 280 logits; the tiny checkpoint has 512.
        var tokenizer = TextTokenizer.Load(Repo.Path("models", "tah-arith"));
        var constraint = new ConstraintCompiler(TokenVocabulary.Create(tokenizer, 280)).JsonObject();
        using var model = ModelLoader.Load(Repo.Path("tests", "fixtures", "tah-tiny", "a"));
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 16 });
        var request = new GenerationRequest { PromptTokens = [1, 2, 3], MaxTokens = 4, Sampling = SamplingParams.Greedy, Policy = IterationPolicy.Never, Constraint = constraint };
        var refusal = Assert.Throws<InvalidRequestException>(() => engine.Admission.Admit(request));

        var names = asked is null ? WireNames.Chat("max_tokens") : WireNames.Chat("max_tokens") with { Constraint = asked };
        var e = names.Refusal(refusal);
        Assert.Equal(400, e.Status);
        Assert.Equal(param, e.Param);
        Assert.Contains($"('{param}')", e.Message, StringComparison.Ordinal);
        Assert.Contains("280", e.Message, StringComparison.Ordinal);
    }
}
