using TaH.Engine.Kv;
using TorchSharp;

namespace TaH.Engine.TaH;

/// <summary>
/// One row of a forward step: a sequence's position at one depth. A depth-1 row reads its token's
/// embedding; a deeper row (a latent iteration) reads the soft input its previous depth produced.
/// </summary>
public sealed class StepRow
{
    private StepRow(SequenceKv kv, int position, int depth, IterationPolicy policy, bool wantsLogits, long slot)
    {
        Kv = kv;
        Position = position;
        Depth = depth;
        Policy = policy;
        WantsLogits = wantsLogits;
        Slot = slot;
    }

    /// <summary>The sequence's tables, already holding this row's entry.</summary>
    public SequenceKv Kv { get; }

    /// <summary>The pool slot that receives this row's key and value.</summary>
    public long Slot { get; }

    public int Position { get; }

    public int Depth { get; }

    public IterationPolicy Policy { get; }

    /// <summary>Whether the caller wants this position's final logits once it stops (to sample, or to inspect).</summary>
    public bool WantsLogits { get; }

    /// <summary>The token id at this position (a latent row's is its depth-1 token).</summary>
    public int Token { get; private init; }

    /// <summary>What a latent row continues from (soft input, carried logits); null at depth 1.</summary>
    public LatentState? Latent { get; private init; }

    public static StepRow ForToken(SequenceKv kv, int position, int token, IterationPolicy policy, bool wantsLogits, long slot) =>
        new(kv, position, 1, policy, wantsLogits, slot) { Token = token };

    public static StepRow ForLatent(SequenceKv kv, LatentState latent, IterationPolicy policy, bool wantsLogits, long slot) =>
        new(kv, latent.Position, latent.Depth, policy, wantsLogits, slot) { Latent = latent, Token = latent.Token };
}

/// <summary>
/// A position that decided to go one level deeper: where, at which depth, the soft input of that
/// pass <c>[hidden]</c>, and the cumulative logits so far <c>[vocab]</c> when they are still needed
/// (to output, or to decide again). Owns its tensors.
/// </summary>
public sealed class LatentState(int position, int token, int depth, torch.Tensor softInput, torch.Tensor? cumulativeLogits, double? firstContinueProbability) : IDisposable
{
    public int Position { get; } = position;

    /// <summary>The position's input token.</summary>
    public int Token { get; } = token;

    /// <summary>The decider's probability after the first pass, carried to the position's result.</summary>
    public double? FirstContinueProbability { get; } = firstContinueProbability;

    /// <summary>The depth this state will run at.</summary>
    public int Depth { get; } = depth;

    public torch.Tensor SoftInput { get; } = softInput;

    public torch.Tensor? CumulativeLogits { get; } = cumulativeLogits;

    /// <summary>An independent copy (for a forked sequence).</summary>
    public LatentState Clone() =>
        new(Position, Token, Depth, SoftInput.clone().DetachFromDisposeScope(), CumulativeLogits?.clone().DetachFromDisposeScope(), FirstContinueProbability);

    public void Dispose()
    {
        SoftInput.Dispose();
        CumulativeLogits?.Dispose();
    }
}

/// <summary>What one row came to. Owns the tensors it carries.</summary>
public sealed class StepRowResult : IDisposable
{
    /// <summary>The decider's continue probability after the position's first pass; null when no decider ran.</summary>
    public double? ContinueProbability { get; init; }

    /// <summary>Set when the position goes deeper: run it in a later step.</summary>
    public LatentState? Next { get; init; }

    /// <summary>The position's final logits <c>[vocab]</c> (sum over its depths), when it stopped and they were wanted.</summary>
    public torch.Tensor? FinalLogits { get; init; }

    public void Dispose()
    {
        FinalLogits?.Dispose();
    }
}
