using TaH.Engine.Config;
using TaH.Engine.Kv;
using TaH.Engine.Model;
using TaH.Kernels;
using TaH.Kernels.Cpu;
using TorchSharp;
using static TorchSharp.torch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace TaH.Engine.TaH;

/// <summary>
/// The TaH layer over Qwen3: runs one forward over rows of mixed depths, adds each row's logits to
/// those of its shallower passes, asks the decider (or the policy) whether the position goes
/// deeper, and builds the soft input of the next depth from the top-k of the cumulative logits.
/// </summary>
public sealed class TaHModel : IDisposable
{
    // Rows per lm-head chunk: bounds the [rows, vocab] logits a long prompt materialises at once.
    private const int LogitChunkRows = 256;

    public TaHModel(Qwen3Model baseModel, IterationDecider? decider, int maxDepth, int inputTopK, bool hasLora, GenerationConfig generation, string directory)
    {
        Base = baseModel;
        Decider = decider;
        MaxDepth = maxDepth;
        InputTopK = Math.Min(inputTopK, baseModel.Config.VocabSize);
        HasLora = hasLora;
        Generation = generation;
        Directory = directory;
    }

    public Qwen3Model Base { get; }

    public IterationDecider? Decider { get; }

    /// <summary>The deepest level (max_iter); 1 for a plain Qwen3 checkpoint.</summary>
    public int MaxDepth { get; }

    public int InputTopK { get; }

    public bool HasLora { get; }

    public GenerationConfig Generation { get; }

    public string Directory { get; }

    public Qwen3Config Config => Base.Config;

    /// <summary>Memory the weights hold: base, head and decider.</summary>
    public long WeightBytes => Base.WeightBytes + (Decider?.Bytes ?? 0);

    /// <summary>Stop ids: generation_config.json's, else config.json's.</summary>
    public IReadOnlyList<int> EosTokenIds => Generation.EosTokenIds.Length > 0 ? Generation.EosTokenIds : Config.EosTokenIds;

    /// <summary>Checks that this model can run <paramref name="policy"/>; returns the error otherwise.</summary>
    public string? Supports(IterationPolicy policy) =>
        policy.Kind switch
        {
            PolicyKind.Never => null,
            _ when MaxDepth < 2 => $"policy '{policy.Kind.ToString().ToLowerInvariant()}' needs a TaH checkpoint (this model has no tah_config.json, so it runs as the base model: use 'never')",
            PolicyKind.Decider when Decider is null => "policy 'decider' needs iter_decider.bin, which this checkpoint lacks",
            _ => null,
        };

    /// <summary>
    /// One forward over <paramref name="rows"/>, whose entries the scheduler has already appended
    /// to their sequences' tables (each row's key and value go to its slot). Results come back in
    /// row order; continuing rows carry the <see cref="LatentState"/> of their next depth, which
    /// the caller then owns.
    /// </summary>
    /// <param name="early">
    /// Called when the step computes logits for one row only, the decider judges it and the caller
    /// wants its logits: with the row's index and its cumulative logits (the caller's to dispose),
    /// before the decider runs. If the row stops, they are its final logits, so the caller may
    /// sample them meanwhile.
    /// </param>
    public StepRowResult[] Step(IReadOnlyList<StepRow> rows, KvCache cache, IPagedAttention attention, Action<int, Tensor>? early = null)
    {
        int n = rows.Count;
        var attentionBatch = BuildAttentionBatch(rows, cache);
        using var scope = NewDisposeScope();
        var device = Base.Device;

        // Inputs: token embeddings for depth-1 rows, soft inputs for latent rows.
        var tokenRows = Enumerable.Range(0, n).Where(i => rows[i].Latent is null).ToArray();
        var latentRows = Enumerable.Range(0, n).Where(i => rows[i].Latent is not null).ToArray();
        var x = empty(n, Config.HiddenSize, dtype: Base.DType, device: device);
        if (tokenRows.Length > 0)
        {
            var ids = Index(tokenRows.Select(i => rows[i].Token), device);
            x.index_copy_(0, Index(tokenRows, device), Base.Embed(ids));
        }

        if (latentRows.Length > 0)
        {
            x.index_copy_(0, Index(latentRows, device), stack(latentRows.Select(i => rows[i].Latent!.SoftInput)));
        }

        // LoRA is on for the latent rows only.
        var lora = !HasLora || latentRows.Length == 0 ? LoraRows.None
            : latentRows.Length == n ? LoraRows.Every
            : LoraRows.Subset(Index(latentRows, device), latentRows);

        // The decider reads selected hidden-state entries of the rows it judges.
        var judged = Enumerable.Range(0, n).Where(i => rows[i].Policy.Kind == PolicyKind.Decider && rows[i].Depth < MaxDepth).ToArray();
        IReadOnlyList<int> captureEntries = judged.Length > 0 ? Decider!.Config.HiddenStatesLayerNums : [];
        var captured = new Tensor[captureEntries.Count];

        var positions = Index(rows.Select(r => r.Position), device);
        var (cos, sin) = Base.Rotary(positions);
        using var plan = attention.Prepare(attentionBatch, device);
        var hidden = Base.Forward(x, new ForwardContext(cos, sin, lora, attention, plan, cache), captureEntries, captured);

        // Logits only where something reads them (a decision, a soft input, the caller), in chunks
        // so a long prompt never holds [rows, vocab] at once.
        var results = new StepRowResult[n];
        var needLogits = Enumerable.Range(0, n).Where(i => rows[i].WantsLogits || MayContinue(rows[i])).ToArray();
        foreach (var chunk in needLogits.Chunk(LogitChunkRows))
        {
            using var chunkScope = NewDisposeScope();
            var decided = DecideChunk(rows, chunk, hidden, judged.Length > 0 ? captured : null, needLogits.Length == 1 ? early : null);
            for (int c = 0; c < chunk.Length; c++)
            {
                results[chunk[c]] = decided[c];
            }
        }

        for (int i = 0; i < n; i++)
        {
            results[i] ??= new StepRowResult { ContinueProbability = rows[i].Latent?.FirstContinueProbability };
        }

        return results;
    }

    /// <summary>
    /// Logits, decisions, soft inputs and outputs for one chunk of rows. The tensors the results
    /// carry are detached from every dispose scope: the results own them.
    /// </summary>
    private StepRowResult[] DecideChunk(IReadOnlyList<StepRow> rows, int[] chunk, Tensor hidden, Tensor[]? captured, Action<int, Tensor>? early)
    {
        var device = Base.Device;
        var cumulative = Base.Logits(hidden.index_select(0, Index(chunk, device)));
        // Row by row: torch's CPU index_add_ over a vocabulary-wide row took over a millisecond.
        for (int c = 0; c < chunk.Length; c++)
        {
            if (rows[chunk[c]].Depth > 1)
            {
                var previous = rows[chunk[c]].Latent!.CumulativeLogits
                    ?? throw new InvalidOperationException($"latent row at position {rows[chunk[c]].Position} needs the logits of its shallower passes");
                AddRow(cumulative, c, previous);
            }
        }

        // Most rows stop at depth 1: the caller samples meanwhile, and the decider's time is hidden.
        if (early is not null && rows[chunk[0]] is { WantsLogits: true } only && MayContinue(only) && only.Policy.Kind == PolicyKind.Decider)
        {
            early(chunk[0], cumulative[0].DetachFromDisposeScope());
        }

        // Top-k of the cumulative logits feeds both the decider and the soft input.
        var open = Enumerable.Range(0, chunk.Length).Where(c => MayContinue(rows[chunk[c]])).ToArray();
        int topK = Math.Min(Math.Max(InputTopK, Decider?.Config.TopK ?? 0), Config.VocabSize);
        Tensor? topValues = null, topIndices = null;
        if (open.Length > 0)
        {
            (topValues, topIndices) = Base.TopK(cumulative, topK, open.Length == chunk.Length ? null : open);
        }

        // Continue probabilities for the rows the decider judges (indices into `open`).
        var probabilities = new double?[chunk.Length];
        var judged = Enumerable.Range(0, open.Length).Where(j => rows[chunk[open[j]]].Policy.Kind == PolicyKind.Decider).ToArray();
        if (judged.Length > 0)
        {
            // Decode steps usually judge every row of the step, in order: no gathers then.
            int[] judgedRows = [.. judged.Select(j => chunk[open[j]])];
            // Rows ascend, so as many as the step has are all of them, in order.
            bool everyRow = judgedRows.Length == captured![0].shape[0];
            var rowIndex = everyRow ? null : Index(judgedRows, device);
            Tensor[] entries = everyRow ? captured! : [.. captured!.Select(h => h.index_select(0, rowIndex!))];
            var top = judged.Length == open.Length ? topValues! : topValues!.index_select(0, Index(judged, device));
            var p = Decider!.ContinueProbabilities(entries, top);
            for (int j = 0; j < judged.Length; j++)
            {
                var row = rows[chunk[open[judged[j]]]];
                probabilities[open[judged[j]]] = row.Policy.Rate is null ? p[j] : 1 - RateDraw(row); // the emulated decider's "probability"
            }
        }

        // Soft inputs of the rows that go deeper: softmax over the top-k, mixing embedding rows.
        var deeper = Enumerable.Range(0, open.Length).Where(j => GoesDeeper(rows[chunk[open[j]]], probabilities[open[j]])).ToArray();
        Tensor? soft = null;
        if (deeper.Length > 0)
        {
            var deeperIndex = Index(deeper, device);
            soft = Base.SoftInput(topValues!.index_select(0, deeperIndex), topIndices!.index_select(0, deeperIndex), InputTopK);
        }

        var results = new StepRowResult[chunk.Length];
        int nextDeeper = 0;
        for (int c = 0; c < chunk.Length; c++)
        {
            var row = rows[chunk[c]];
            double? first = row.Latent is { } latent ? latent.FirstContinueProbability : probabilities[c];
            bool goesDeeper = nextDeeper < deeper.Length && open[deeper[nextDeeper]] == c;
            if (goesDeeper)
            {
                bool carry = row.WantsLogits || row.Depth + 1 < MaxDepth;
                var next = new LatentState(
                    row.Position,
                    row.Token,
                    row.Depth + 1,
                    soft![nextDeeper].clone().DetachFromDisposeScope(),
                    carry ? cumulative[c].clone().DetachFromDisposeScope() : null,
                    first);
                results[c] = new StepRowResult { ContinueProbability = first, Next = next };
                nextDeeper++;
            }
            else
            {
                // A view of the chunk's logits: it keeps their storage alive without a copy.
                var final = row.WantsLogits ? cumulative[c].DetachFromDisposeScope() : null;
                results[c] = new StepRowResult { ContinueProbability = first, FinalLogits = final };
            }
        }

        return results;
    }

    /// <summary>
    /// <c>logits[row] += previous</c>. On the CPU a plain loop over the two rows: torch's add_ of
    /// a vocabulary-wide view took a fifth of a millisecond, its OpenMP threads meeting the
    /// kernel pool's spinning ones.
    /// </summary>
    private static unsafe void AddRow(Tensor logits, int row, Tensor previous)
    {
        if (logits.device_type != DeviceType.CPU || logits.dtype != ScalarType.Float32 || previous.dtype != ScalarType.Float32 || !logits.is_contiguous() || !previous.is_contiguous() || previous.numel() != logits.shape[1])
        {
            logits[row].add_(previous);
            return;
        }

        int width = (int)logits.shape[1];
        var target = new Span<float>(TensorMemory.Pointer<float>(logits) + ((long)row * width), width);
        TensorPrimitives.Add(target, new ReadOnlySpan<float>(TensorMemory.Pointer<float>(previous), width), target);
    }

    private bool GoesDeeper(StepRow row, double? probability) =>
        row.Policy.Kind switch
        {
            PolicyKind.Always => true,
            PolicyKind.Decider => probability!.Value > row.Policy.ThresholdOr(Decider!.Threshold),
            _ => false,
        };

    /// <summary>A uniform draw in [0, 1) fixed by the row's content (SplitMix64 finaliser).</summary>
    private static double RateDraw(StepRow row)
    {
        ulong z = ((ulong)(uint)row.Position << 32) ^ ((ulong)(uint)row.Token * 0x9E3779B97F4A7C15UL) ^ ((ulong)row.Depth << 60);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }

    private static Tensor Index(IEnumerable<int> indices, Device device) =>
        tensor(indices.Select(i => (long)i).ToArray(), device: device);

    private bool MayContinue(StepRow row) => row.Depth < MaxDepth && row.Policy.Kind != PolicyKind.Never;

    private static AttentionBatch BuildAttentionBatch(IReadOnlyList<StepRow> rows, KvCache cache)
    {
        var sequences = new List<SequenceKv>();
        var sequenceIndex = new Dictionary<SequenceKv, int>(ReferenceEqualityComparer.Instance);
        var rowSequence = new int[rows.Count];
        for (int i = 0; i < rows.Count; i++)
        {
            if (!sequenceIndex.TryGetValue(rows[i].Kv, out int s))
            {
                s = sequences.Count;
                sequenceIndex[rows[i].Kv] = s;
                sequences.Add(rows[i].Kv);
            }

            rowSequence[i] = s;
        }

        return new AttentionBatch(
            cache.BlockSize,
            [.. sequences.Select(s => s.ToAttention())],
            rowSequence,
            [.. rows.Select(r => r.Position)],
            [.. rows.Select(r => r.Depth)],
            [.. rows.Select(r => r.Slot)]);
    }

    public void Dispose()
    {
        Base.Dispose();
        Decider?.Dispose();
    }
}
