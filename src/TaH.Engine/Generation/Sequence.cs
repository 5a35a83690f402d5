using TaH.Engine.Kv;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;

namespace TaH.Engine.Generation;

/// <summary>
/// The engine's state for one request: its tokens, KV tables, sampler, and the work its next
/// step owes it (depth-1 rows for tokens not yet run, latent rows of positions going deeper).
/// </summary>
public sealed class Sequence : IDisposable
{
    private readonly List<int> _tokens;
    private readonly List<LatentState> _latents = [];

    internal Sequence(int id, GenerationRequest request, SequenceKv kv, Sampler sampler)
    {
        Id = id;
        Request = request;
        Kv = kv;
        Sampler = sampler;
        _tokens = [.. request.PromptTokens];
    }

    public int Id { get; }

    public GenerationRequest Request { get; }

    public IReadOnlyList<int> Tokens => _tokens;

    public int PromptLength => Request.PromptTokens.Count;

    public int GeneratedCount => _tokens.Count - PromptLength;

    public FinishReason? Finished { get; private set; }

    /// <summary>KV blocks this sequence holds at <paramref name="depth"/>.</summary>
    public int BlockCount(int depth) => depth <= Kv.MaxDepth ? Kv.BlockCount(depth) : 0;

    /// <summary>Bytes of KV blocks this sequence holds at <paramref name="depth"/>.</summary>
    public long KvBytes(int depth) => BlockCount(depth) * Kv.BytesPerBlock;

    internal SequenceKv Kv { get; }

    internal Sampler Sampler { get; }

    /// <summary>Positions whose depth-1 row has run.</summary>
    internal int Computed { get; private set; }

    /// <summary>
    /// Whether the next step owes this sequence rows. After it finished, only the latent rows an
    /// inspection still wants recorded.
    /// </summary>
    internal bool HasWork => _latents.Count > 0 || (Finished is null && Computed < _tokens.Count);

    /// <summary>Finished, and nothing left to run.</summary>
    public bool IsDone => Finished is not null && !HasWork;

    /// <summary>The rows this sequence brings to the next step, latent rows first.</summary>
    internal IEnumerable<StepRow> NextRows()
    {
        var policy = Request.Policy;
        foreach (var latent in _latents)
        {
            yield return StepRow.ForLatent(Kv, latent, policy, WantsLogits(latent.Position));
        }

        for (int p = Computed; Finished is null && p < _tokens.Count; p++)
        {
            yield return StepRow.ForToken(Kv, p, _tokens[p], policy, WantsLogits(p));
        }
    }

    /// <summary>Marks the rows of <see cref="NextRows"/> as run; the latents they consumed are freed.</summary>
    internal void RowsRan()
    {
        DropLatents();
        Computed = _tokens.Count;
    }

    internal void GoDeeper(LatentState next) => _latents.Add(next);

    internal bool IsLast(int position) => position == _tokens.Count - 1;

    internal void Append(int token) => _tokens.Add(token);

    internal void Finish(FinishReason reason)
    {
        Finished ??= reason;
        if (!Request.RecordPositions || reason == FinishReason.Cancelled)
        {
            DropLatents();
        }
    }

    private bool WantsLogits(int position) => Request.RecordPositions || IsLast(position);

    private void DropLatents()
    {
        foreach (var latent in _latents)
        {
            latent.Dispose();
        }

        _latents.Clear();
    }

    public void Dispose()
    {
        DropLatents();
        Kv.Dispose();
    }
}
