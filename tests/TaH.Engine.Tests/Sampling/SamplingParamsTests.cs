using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.Sampling;

namespace TaH.Engine.Tests.Sampling;

public class SamplingParamsTests
{
    public static TheoryData<SamplingParams, string, string> Invalid => new()
    {
        { new() { Temperature = -0.1f }, "temperature", "[0, 2]" },
        { new() { Temperature = 2.01f }, "temperature", "[0, 2]" },
        { new() { Temperature = float.NaN }, "temperature", "[0, 2]" },
        { new() { TopP = 0f }, "top_p", "(0, 1]" },
        { new() { TopP = 1.5f }, "top_p", "(0, 1]" },
        { new() { TopP = float.NaN }, "top_p", "(0, 1]" },
        { new() { TopK = -2 }, "top_k", "at least 1" },
        { new() { MinP = -0.01f }, "min_p", "[0, 1]" },
        { new() { MinP = 1.01f }, "min_p", "[0, 1]" },
        { new() { PresencePenalty = 2.5f }, "presence_penalty", "[-2, 2]" },
        { new() { PresencePenalty = -2.5f }, "presence_penalty", "[-2, 2]" },
        { new() { FrequencyPenalty = 2.01f }, "frequency_penalty", "[-2, 2]" },
        { new() { FrequencyPenalty = float.NaN }, "frequency_penalty", "[-2, 2]" },
        { new() { RepetitionPenalty = 0f }, "repetition_penalty", "> 0" },
        { new() { RepetitionPenalty = -1f }, "repetition_penalty", "> 0" },
        { new() { RepetitionPenalty = float.PositiveInfinity }, "repetition_penalty", "> 0" },
        { new() { Logprobs = -1 }, "logprobs", "[0, 20]" },
        { new() { Logprobs = 21 }, "logprobs", "[0, 20]" },
    };

    public static TheoryData<SamplingParams> Valid => new()
    {
        new(),
        new() { Temperature = 0f },
        new() { Temperature = 2f },
        new() { TopP = 1e-6f },
        new() { TopP = 1f },
        new() { TopK = -1 },
        new() { TopK = 0 },
        new() { TopK = 1 },
        new() { MinP = 0f },
        new() { MinP = 1f },
        new() { PresencePenalty = -2f, FrequencyPenalty = 2f },
        new() { PresencePenalty = 2f, FrequencyPenalty = -2f },
        new() { RepetitionPenalty = 1e-3f },
        new() { RepetitionPenalty = 5f },
        new() { Logprobs = 0 },
        new() { Logprobs = 20 },
        new() { Seed = long.MinValue },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void ValidateNamesTheParameterAndItsRange(SamplingParams parameters, string name, string range)
    {
        var error = Assert.Throws<ArgumentException>(parameters.Validate);
        Assert.Equal(name, error.ParamName);
        Assert.StartsWith(name + " ", error.Message, StringComparison.Ordinal);
        Assert.Contains(range, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Valid))]
    public void ValidateAcceptsTheBoundsOfEachRange(SamplingParams parameters) => parameters.Validate();

    [Fact]
    public void DefaultsAreOpenAiDefaults()
    {
        var p = SamplingParams.Default;
        Assert.Equal(1f, p.Temperature);
        Assert.Equal(1f, p.TopP);
        Assert.Equal(0, p.TopK);
        Assert.Equal(0f, p.MinP);
        Assert.Equal(0f, p.PresencePenalty);
        Assert.Equal(0f, p.FrequencyPenalty);
        Assert.Equal(1f, p.RepetitionPenalty);
        Assert.Null(p.Seed);
        Assert.Null(p.Logprobs);
        Assert.False(p.IsGreedy);
        Assert.True(SamplingParams.Greedy.IsGreedy);
    }

    [Fact]
    public void TheEngineRefusesParametersOutOfRangeNamingThem()
    {
        using var model = ModelLoader.Load(Fixtures.TinyCheckpoint("a"));
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 16 });
        var error = Assert.Throws<InvalidRequestException>(() => engine.Add(new GenerationRequest { PromptTokens = [1, 2], Sampling = new SamplingParams { TopP = 0f } }));
        Assert.Equal("top_p", error.Param);
        Assert.StartsWith("top_p must be in (0, 1]", error.Message, StringComparison.Ordinal);
    }
}
