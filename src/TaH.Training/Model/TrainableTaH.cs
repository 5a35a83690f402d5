using TaH.Kernels;
using TaH.Engine.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TaH.Training.Model;

/// <summary>What the TaH parts look like: the LoRA of depth 2, the decider, the soft-input width.</summary>
public sealed record TaHSettings
{
    public required LoraConfig Lora { get; init; }

    public required DeciderConfig Decider { get; init; }

    /// <summary>k of the top-k softmax that builds the depth-2 soft input.</summary>
    public required int InputTopK { get; init; }

    public double LoraDropout { get; init; } = 0.1;

    public double DeciderDropout { get; init; } = 0.1;
}

/// <summary>The first pass over a batch: what depth 2, the decider and the losses read.</summary>
public sealed class Depth1Pass(Tensor logits, (Tensor K, Tensor V)[] kv, Tensor[] captured)
{
    /// <summary><c>[B, T, vocab]</c>.</summary>
    public Tensor Logits { get; } = logits;

    /// <summary>Per layer, keys (after q/k-norm and RoPE) and values <c>[B, kvHeads, T, headDim]</c>: what depth 2 attends to.</summary>
    public (Tensor K, Tensor V)[] Kv { get; } = kv;

    /// <summary>The decider's entries of the <c>hidden_states</c> tuple, each <c>[B, T, hidden]</c>.</summary>
    public Tensor[] Captured { get; } = captured;
}

/// <summary>
/// A TaH model (Qwen3 + depth-2 LoRA + MLP decider) as plain named parameters, spelled exactly as in
/// the released files: <c>model.layers.{i}.self_attn.q_proj.weight</c> in model.safetensors,
/// <c>base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight</c> in the adapter,
/// <c>backbone.blocks.{j}.mlp.0.weight</c> in the decider's state dict. The forward runs whole
/// padded sequences: depth 1 over every position, then depth 2 over every position with its keys
/// masked to the iterated ones (the duo-causal rule as a dense mask), which at this scale costs
/// less than gathering rows.
/// </summary>
public sealed class TrainableTaH : IDisposable
{
    private const double LayerNormEps = 1e-5; // torch.nn.LayerNorm's default, as the reference decider

    public TrainableTaH(Qwen3Config config, TaHSettings? tah, Dictionary<string, Parameter> baseWeights,
        Dictionary<string, Parameter> lora, Dictionary<string, Parameter> decider)
    {
        if (config.AttentionBias)
        {
            throw new ArgumentException("attention biases are not supported for training (Qwen3 has none)");
        }

        Config = config;
        TaH = tah;
        Base = baseWeights;
        Lora = lora;
        Decider = decider;
    }

    public Qwen3Config Config { get; }

    /// <summary>Null for a plain Qwen3 (the reference model before stage 1).</summary>
    public TaHSettings? TaH { get; private set; }

    /// <summary>model.safetensors: <c>model.embed_tokens.weight</c>, <c>model.layers.{i}...</c>, <c>model.norm.weight</c>, <c>lm_head.weight</c> unless tied.</summary>
    public Dictionary<string, Parameter> Base { get; }

    /// <summary>lora/adapter_model.safetensors, PEFT names, unscaled (scaling = alpha / r applies in the forward).</summary>
    public Dictionary<string, Parameter> Lora { get; }

    /// <summary>iter_decider.bin's state dict (without the learned threshold, which nothing reads).</summary>
    public Dictionary<string, Parameter> Decider { get; }

    /// <summary>Dropout (LoRA and decider) is on only while training; evaluation matches the engine.</summary>
    public bool IsTraining { get; set; }

    public IEnumerable<Parameter> AllParameters => Base.Values.Concat(Lora.Values).Concat(Decider.Values);

    private Tensor EmbedTokens => Base["model.embed_tokens.weight"];

    private Tensor LmHead => Config.TieWordEmbeddings ? EmbedTokens : Base["lm_head.weight"];

    /// <summary>Sets which groups train; the others are frozen (no gradient, no optimizer state).</summary>
    public void SetTrainable(bool baseWeights, bool lora, bool decider)
    {
        foreach (var p in Base.Values)
        {
            p.requires_grad = baseWeights;
        }

        foreach (var p in Lora.Values)
        {
            p.requires_grad = lora;
        }

        foreach (var p in Decider.Values)
        {
            p.requires_grad = decider;
        }
    }

    /// <summary>The decider threshold the checkpoint will carry (stage 2 picks it on held-out data).</summary>
    public void SetThreshold(double threshold)
    {
        var tah = TaH ?? throw new InvalidOperationException("a plain Qwen3 has no decider");
        TaH = tah with { Decider = tah.Decider with { Threshold = threshold } };
    }

    public IEnumerable<Parameter> TrainableParameters => AllParameters.Where(p => p.requires_grad);

    /// <summary>
    /// Depth 1 (LoRA off) over token ids <c>[B, T]</c>, right-padded. Keeps what depth 2 and the
    /// decider read when <paramref name="keepForDeeper"/>.
    /// </summary>
    public Depth1Pass Depth1(Tensor ids, bool keepForDeeper = true)
    {
        var x = EmbedTokens.index_select(0, ids.reshape(-1)).view(ids.shape[0], ids.shape[1], Config.HiddenSize);
        long t = ids.shape[1];
        using var causal = ones(t, t, dtype: ScalarType.Bool).tril_();
        IReadOnlyList<int> entries = keepForDeeper && TaH is not null ? TaH.Decider.HiddenStatesLayerNums : [];
        var (hidden, kv, captured) = RunLayers(x, causal.view(1, 1, t, t), past: null, lora: false, entries);
        return new Depth1Pass(F.linear(hidden, LmHead), kv, captured);
    }

    /// <summary>
    /// Depth 2 (LoRA on) at the positions <paramref name="iterate"/> <c>[B, T]</c> marks, fed the soft
    /// top-k embedding of the depth-1 logits; returns the final logits: depth-1 logits plus, where a
    /// position iterated, its depth-2 logits. Gradients flow through the soft input, as in the reference.
    /// </summary>
    public Tensor Depth2(Depth1Pass first, Tensor iterate)
    {
        var settings = TaH ?? throw new InvalidOperationException("a plain Qwen3 has no depth 2");
        long b = iterate.shape[0], t = iterate.shape[1];
        var (topValues, topIndices) = first.Logits.topk(Math.Min(settings.InputTopK, Config.VocabSize), dim: -1);
        var weights = topValues.softmax(-1);
        var rows = EmbedTokens.index_select(0, topIndices.reshape(-1)).view(b, t, topIndices.shape[2], Config.HiddenSize);
        var soft = weights.unsqueeze(-1).mul(rows).sum(2);

        // Duo-causal: a depth-2 query at p sees depth-1 keys at p' <= p and depth-2 keys of iterated p' <= p.
        using var causal = ones(t, t, dtype: ScalarType.Bool).tril_();
        var toDeeper = causal.unsqueeze(0).logical_and(iterate.unsqueeze(1));
        var mask = cat([causal.unsqueeze(0).expand(b, t, t), toDeeper], 2).unsqueeze(1);
        var (hidden, _, _) = RunLayers(soft, mask, first.Kv, lora: true, []);
        var logits2 = F.linear(hidden, LmHead);
        return first.Logits.add(logits2.mul(iterate.unsqueeze(-1).to(logits2.dtype)), PinnedScalars.One);
    }

    /// <summary>The decider's continue logit <c>[B, T]</c> after depth 1 (sigmoid gives the probability).</summary>
    public Tensor ContinueLogit(Depth1Pass first)
    {
        var c = TaH?.Decider ?? throw new InvalidOperationException("a plain Qwen3 has no decider");
        double p = TaH.DeciderDropout;
        var hidden = cat(first.Captured, -1);
        var v = first.Logits.topk(Math.Min(c.TopK, Config.VocabSize), dim: -1).values;
        if (c.NormalizeInput)
        {
            hidden = LayerNorm(hidden, DeciderLayout.LayerNormHiddenStates);
            v = v.softmax(-1);
        }

        var x = Linear(cat([hidden, Linear(v, DeciderLayout.LogitsProjection)], -1), DeciderLayout.CombinedProjection);
        x = Linear(x, DeciderLayout.InputProjection);
        var layout = new DeciderLayout(c);
        for (int j = 0; j < layout.BlockCount; j++)
        {
            var residual = layout.HasDimChange(j) ? Linear(x, DeciderLayout.BlockDimChange(j)) : x;
            var inner = F.dropout(F.gelu(Linear(LayerNorm(x, DeciderLayout.BlockNorm(j)), DeciderLayout.BlockUp(j))), p, IsTraining);
            x = residual.add(F.dropout(Linear(inner, DeciderLayout.BlockDown(j)), p, IsTraining), PinnedScalars.One);
        }

        return Linear(LayerNorm(x, DeciderLayout.OutputNorm), DeciderLayout.OutputLinear).squeeze(-1);
    }

    /// <summary>
    /// The decoder layers over <paramref name="x"/> <c>[B, T, hidden]</c>. With <paramref name="past"/>
    /// (depth 1's keys and values) the queries attend to <c>[past; own]</c> under <paramref name="mask"/>
    /// <c>[B|1, 1, T, keys]</c>. Returns the final normed hidden states, this pass's keys and values,
    /// and the requested entries of the Hugging Face <c>hidden_states</c> tuple.
    /// </summary>
    private (Tensor Hidden, (Tensor K, Tensor V)[] Kv, Tensor[] Captured) RunLayers(
        Tensor x, Tensor mask, (Tensor K, Tensor V)[]? past, bool lora, IReadOnlyList<int> entries)
    {
        var c = Config;
        long b = x.shape[0], t = x.shape[1];
        int heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads, d = c.HeadDim;
        // RoPE tables computed as the engine computes them.
        var exponents = arange(0, d, 2, dtype: ScalarType.Int64).to(ScalarType.Float32).div_(d);
        var invFreq = pow(c.RopeTheta, exponents).reciprocal_();
        var freqs = arange(t, dtype: ScalarType.Float32).unsqueeze(1).mul(invFreq.unsqueeze(0));
        var emb = cat([freqs, freqs], 1);
        var (cos, sin) = (emb.cos(), emb.sin());

        var kv = new (Tensor, Tensor)[c.NumHiddenLayers];
        var captured = new Tensor[entries.Count];
        void Capture(int entry, Tensor value)
        {
            for (int e = 0; e < entries.Count; e++)
            {
                if (entries[e] == entry)
                {
                    captured[e] = value;
                }
            }
        }

        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            Capture(i, x);
            string p = $"model.layers.{i}";
            var h = RmsNorm(x, Base[$"{p}.input_layernorm.weight"]);
            var q = RmsNorm(Projection(h, $"{p}.self_attn.q_proj", lora).view(b, t, heads, d), Base[$"{p}.self_attn.q_norm.weight"]);
            var k = RmsNorm(Projection(h, $"{p}.self_attn.k_proj", lora).view(b, t, kvHeads, d), Base[$"{p}.self_attn.k_norm.weight"]);
            var v = Projection(h, $"{p}.self_attn.v_proj", lora).view(b, t, kvHeads, d).transpose(1, 2);
            q = Rotate(q.transpose(1, 2), cos, sin);
            k = Rotate(k.transpose(1, 2), cos, sin);
            kv[i] = (k, v);

            var keys = past is null ? k : cat([past[i].K, k], 2);
            var values = past is null ? v : cat([past[i].V, v], 2);
            int group = heads / kvHeads;
            keys = keys.repeat_interleave(group, 1);
            values = values.repeat_interleave(group, 1);
            var scores = q.matmul(keys.transpose(2, 3)).mul_(PinnedScalars.Of(1.0 / Math.Sqrt(d))).masked_fill(mask.logical_not(), PinnedScalars.Of(double.NegativeInfinity));
            var attention = scores.softmax(-1).matmul(values).transpose(1, 2).reshape(b, t, heads * d);
            x = x.add(Projection(attention, $"{p}.self_attn.o_proj", lora), PinnedScalars.One);

            h = RmsNorm(x, Base[$"{p}.post_attention_layernorm.weight"]);
            var gate = Projection(h, $"{p}.mlp.gate_proj", lora);
            var up = Projection(h, $"{p}.mlp.up_proj", lora);
            x = x.add(Projection(F.silu(gate).mul(up), $"{p}.mlp.down_proj", lora), PinnedScalars.One);
        }

        var output = RmsNorm(x, Base["model.norm.weight"]);
        Capture(c.NumHiddenLayers, output);
        return (output, kv, captured);
    }

    /// <summary><c>W x</c>, plus <c>B (A dropout(x)) * alpha / r</c> at depth 2 when the adapter targets the projection.</summary>
    private Tensor Projection(Tensor x, string name, bool lora)
    {
        var y = F.linear(x, Base[$"{name}.weight"]);
        if (!lora || TaH is null || !Lora.TryGetValue($"base_model.model.{name}.lora_A.weight", out var a))
        {
            return y;
        }

        var loraB = Lora[$"base_model.model.{name}.lora_B.weight"];
        var dropped = F.dropout(x, TaH.LoraDropout, IsTraining);
        return y.add(F.linear(F.linear(dropped, a), loraB).mul(PinnedScalars.Of(TaH.Lora.Scaling)), PinnedScalars.One);
    }

    private Tensor RmsNorm(Tensor x, Tensor weight)
    {
        var normed = x.mul(x.mul(x).mean([-1], keepdim: true).add(PinnedScalars.Of(Config.RmsNormEps), PinnedScalars.One).rsqrt());
        return weight.mul(normed);
    }

    /// <summary>Rotate-half RoPE on <c>[B, heads, T, d]</c>.</summary>
    private static Tensor Rotate(Tensor x, Tensor cos, Tensor sin)
    {
        var halves = x.chunk(2, -1);
        return x.mul(cos).add(cat([halves[1].neg(), halves[0]], -1).mul(sin), PinnedScalars.One);
    }

    private Tensor Linear(Tensor x, string name) => F.linear(x, Decider[$"{name}.weight"], Decider[$"{name}.bias"]);

    private Tensor LayerNorm(Tensor x, string name) =>
        F.layer_norm(x, [x.shape[^1]], Decider[$"{name}.weight"], Decider[$"{name}.bias"], LayerNormEps);

    public void Dispose()
    {
        foreach (var p in AllParameters)
        {
            p.Dispose();
        }
    }
}
