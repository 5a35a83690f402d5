using TaH.Engine.Constraints;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;

namespace TaH.Engine.Generation;

/// <summary>One generation as the engine receives it: data, flowing one way.</summary>
public sealed record GenerationRequest
{
    public required IReadOnlyList<int> PromptTokens { get; init; }

    public SamplingParams Sampling { get; init; } = SamplingParams.Default;

    /// <summary>Tokens to generate at most.</summary>
    public int MaxTokens { get; init; } = 256;

    public IterationPolicy Policy { get; init; } = IterationPolicy.Decider;

    /// <summary>Token ids that end the generation, in addition to the model's EOS ids.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];

    /// <summary>Keep going past EOS (benchmarks).</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>Report every position's depth and final logits, prompt included (inspection).</summary>
    public bool RecordPositions { get; init; }

    /// <summary>Parallel samples of the same prompt; they share its KV blocks.</summary>
    public int N { get; init; } = 1;

    /// <summary>
    /// Structured output: only tokens that keep the output valid are sampled, and the model's EOS
    /// and <see cref="StopTokenIds"/> only once it is complete. Compiled for the model's vocabulary.
    /// </summary>
    public Constraint? Constraint { get; init; }
}

public enum FinishReason
{
    /// <summary>An EOS or stop token was generated.</summary>
    Stop,

    /// <summary>max_tokens or the context length was reached.</summary>
    Length,

    /// <summary>The caller cancelled.</summary>
    Cancelled,
}

/// <summary>
/// A generated token. <see cref="Depth"/> is how many passes the prediction of this token took:
/// the depth at which the position before it stopped, whose summed logits it was sampled from.
/// </summary>
public sealed record TokenEvent(
    int Token,
    int Depth,
    double? ContinueProbability,
    SampledToken Sample,
    FinishReason? Finish);

/// <summary>What one position came to, for inspection: its depth, the decider's probability after depth 1, its final logits.</summary>
public sealed record PositionRecord(int Position, int Token, int Depth, double? ContinueProbability, float[] FinalLogits);
