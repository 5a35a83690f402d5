using TaH.Engine.Config;
using TaH.Engine.Kv;
using TaH.Kernels;
using TaH.Kernels.Cpu;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TaH.Engine.Model;

/// <summary>
/// What one forward shares across layers: the rows' positions (for RoPE), which rows take LoRA,
/// and the attention plan over the paged cache.
/// </summary>
internal sealed class ForwardContext(Tensor cos, Tensor sin, LoraRows lora, IPagedAttention attention, AttentionPlan plan, KvCache cache)
{
    /// <summary><c>[rows, 1, headDim]</c>.</summary>
    public Tensor Cos { get; } = cos;

    public Tensor Sin { get; } = sin;

    public LoraRows Lora { get; } = lora;

    public IPagedAttention Attention { get; } = attention;

    public AttentionPlan Plan { get; } = plan;

    public KvCache Cache { get; } = cache;
}

/// <summary>
/// Qwen3 as in the Hugging Face modelling file, over rows rather than a padded batch: each row is
/// one (sequence, position, depth) and carries its own input embedding. Field names follow the
/// checkpoint (<c>model.layers.{i}.self_attn.q_proj</c>, ...); q|k|v and gate|up are fused at load.
/// </summary>
public sealed class Qwen3Model : IDisposable
{
    private readonly Tensor _invFreq;

    internal Qwen3Model(Qwen3Config config, LinearWeight embedTokens, Qwen3DecoderLayer[] layers, Tensor norm, LinearWeight lmHead)
    {
        Config = config;
        EmbedTokens = embedTokens;
        Layers = layers;
        Norm = norm;
        LmHead = lmHead;
        Device = norm.device;
        DType = norm.dtype;
        // Kernel-format weights make steps short enough that torch's per-op dispatch shows: the
        // small ops then run in place too. The fp32 path keeps torch's ops, bit for bit.
        Ops = Device.type == DeviceType.CPU && lmHead.Dense is null ? CpuFusedOps.Instance : FusedOps.For(Device);
        using (NewDisposeScope())
        {
            var exponents = arange(0, config.HeadDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32).div_(PinnedScalars.Of(config.HeadDim));
            _invFreq = pow(config.RopeTheta, exponents).reciprocal_().to(Device).DetachFromDisposeScope();
        }
    }

    public Qwen3Config Config { get; }

    /// <summary><c>model.embed_tokens.weight</c> <c>[vocab, hidden]</c>, read a row per token.</summary>
    internal LinearWeight EmbedTokens { get; }

    internal Qwen3DecoderLayer[] Layers { get; }

    /// <summary><c>model.norm.weight</c>.</summary>
    public Tensor Norm { get; }

    /// <summary><c>lm_head.weight</c>, or the embedding matrix when tied (one object, held once).</summary>
    internal LinearWeight LmHead { get; }

    public Device Device { get; }

    /// <summary>How the linear maps' weights are held.</summary>
    public WeightFormat Weights => LmHead.Format;

    /// <summary>Memory of the weights: linear maps (the tied head once), norms, LoRA.</summary>
    public long WeightBytes =>
        EmbedTokens.Bytes + (ReferenceEquals(LmHead, EmbedTokens) ? 0 : LmHead.Bytes)
        + Layers.Sum(l => l.WeightBytes) + (Norm.numel() * Norm.ElementSize);

    /// <summary>RMSNorm, q/k norm + RoPE and the soft input mix: CUDA kernels on a GPU, TorchSharp ops on the CPU.</summary>
    public IFusedOps Ops { get; }

    /// <summary>Every weight tensor the model holds (the tied head once).</summary>
    internal IEnumerable<Tensor> Parameters()
    {
        yield return Norm;
        foreach (var weight in new[] { EmbedTokens, LmHead }.Distinct().Select(w => w.Dense).OfType<Tensor>())
        {
            yield return weight;
        }

        foreach (var layer in Layers)
        {
            foreach (var t in layer.Parameters())
            {
                yield return t;
            }
        }
    }

    /// <summary>The activations' type: fp32 on the CPU whatever the weights, bf16 on a GPU.</summary>
    public ScalarType DType { get; }

    /// <summary>Input embeddings of token ids: rows of the embedding, dequantised when it is quantised.</summary>
    internal Tensor Embed(Tensor ids) => EmbedTokens.Rows(ids);

    /// <summary>
    /// The <paramref name="k"/> largest logits of each row (or of the rows <paramref name="only"/>
    /// names), descending, with their ids: fp32 CPU rows in the project's pass, which reads the
    /// named rows where they are, other tensors (the GPU's) through torch.
    /// </summary>
    internal (Tensor Values, Tensor Indices) TopK(Tensor rows, int k, int[]? only = null) => CpuTopK.Select(rows, k, only);

    /// <summary>The soft input of rows that go deeper (see <see cref="IFusedOps.SoftTopKMix"/>), over the embedding in its format.</summary>
    internal Tensor SoftInput(Tensor topValues, Tensor topIds, int topK)
    {
        if (EmbedTokens.Dense is { } table)
        {
            return Ops.SoftTopKMix(topValues, topIds, topK, table);
        }

        using var ids = topIds.narrow(1, 0, topK).reshape(-1);
        using var rows = EmbedTokens.Rows(ids);
        return TorchFusedOps.MixRows(topValues, topK, rows);
    }

    /// <summary>RoPE tables for the rows' positions, <c>[rows, 1, headDim]</c> each.</summary>
    internal (Tensor Cos, Tensor Sin) Rotary(Tensor positions)
    {
        using var scope = NewDisposeScope();
        var freqs = positions.to(ScalarType.Float32).unsqueeze(1).mul(_invFreq.unsqueeze(0));
        var emb = cat([freqs, freqs], 1).unsqueeze(1);
        return (emb.cos().to(DType).MoveToOuterDisposeScope(), emb.sin().to(DType).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Runs the decoder over the rows' input embeddings <c>x</c> <c>[rows, hidden]</c> and returns
    /// the final normed hidden states. <paramref name="captured"/>, when given, receives the entries
    /// of the Hugging Face <c>hidden_states</c> tuple named by <paramref name="captureEntries"/>
    /// (entry k = input of layer k; entry L = the output after the final norm).
    /// </summary>
    internal Tensor Forward(Tensor x, ForwardContext context, IReadOnlyList<int> captureEntries, Tensor[]? captured)
    {
        using var scope = NewDisposeScope();
        var h = x;
        for (int i = 0; i < Layers.Length; i++)
        {
            Capture(i, h);
            h = Layers[i].Forward(h, i, context, Config, Ops);
        }

        var output = Ops.RmsNorm(h, Norm, Config.RmsNormEps);
        Capture(Layers.Length, output);
        return output.MoveToOuterDisposeScope();

        void Capture(int entry, Tensor value)
        {
            for (int c = 0; c < captureEntries.Count; c++)
            {
                if (captureEntries[c] == entry && captured is not null)
                {
                    captured[c] = value.alias().MoveToOuterDisposeScope();
                }
            }
        }
    }

    /// <summary><c>[rows, vocab]</c> logits of final hidden states.</summary>
    internal Tensor Logits(Tensor hidden) => LmHead.Forward(hidden, null);

    public void Dispose()
    {
        foreach (var layer in Layers)
        {
            layer.Dispose();
        }

        if (!ReferenceEquals(LmHead, EmbedTokens))
        {
            LmHead.Dispose();
        }

        EmbedTokens.Dispose();
        Norm.Dispose();
        _invFreq.Dispose();
    }
}

/// <summary>One Qwen3 decoder layer: pre-norm attention with per-head q/k RMSNorm and RoPE, then a SiLU-gated MLP.</summary>
internal sealed class Qwen3DecoderLayer(
    Tensor inputLayernorm,
    LoraLinear qkvProj,
    Tensor qNorm,
    Tensor kNorm,
    LoraLinear oProj,
    Tensor postAttentionLayernorm,
    LoraLinear gateUpProj,
    LoraLinear downProj) : IDisposable
{
    public Tensor InputLayernorm { get; } = inputLayernorm;

    public LoraLinear QkvProj { get; } = qkvProj;

    public Tensor QNorm { get; } = qNorm;

    public Tensor KNorm { get; } = kNorm;

    public LoraLinear OProj { get; } = oProj;

    public Tensor PostAttentionLayernorm { get; } = postAttentionLayernorm;

    public LoraLinear GateUpProj { get; } = gateUpProj;

    public LoraLinear DownProj { get; } = downProj;

    public IEnumerable<Tensor> Parameters() =>
        new[] { InputLayernorm, QNorm, KNorm, PostAttentionLayernorm }
            .Concat(new[] { QkvProj, OProj, GateUpProj, DownProj }.SelectMany(p => p.Parameters()));

    public long WeightBytes =>
        new[] { InputLayernorm, QNorm, KNorm, PostAttentionLayernorm }.Sum(t => t.numel() * t.ElementSize)
        + new[] { QkvProj, OProj, GateUpProj, DownProj }.Sum(p => p.Bytes);

    public Tensor Forward(Tensor x, int layerIndex, ForwardContext context, Qwen3Config config, IFusedOps ops)
    {
        using var scope = NewDisposeScope();
        long rows = x.shape[0];
        int heads = config.NumAttentionHeads, kvHeads = config.NumKeyValueHeads, headDim = config.HeadDim;

        var h = ops.RmsNorm(x, InputLayernorm, config.RmsNormEps);
        var qkv = QkvProj.Forward(h, context.Lora);
        var (q, k, v) = ops.QkvNormRope(qkv, heads, kvHeads, headDim, QNorm, KNorm, context.Cos, context.Sin, config.RmsNormEps);

        var attention = context.Attention.Forward(
            context.Plan, q, k, v, context.Cache.Layer(layerIndex), 1.0 / Math.Sqrt(headDim));
        x = x.add(OProj.Forward(attention.view(rows, heads * headDim), context.Lora), PinnedScalars.One);

        h = ops.RmsNorm(x, PostAttentionLayernorm, config.RmsNormEps);
        var gateUp = GateUpProj.Forward(h, context.Lora).chunk(2, 1);
        var mlp = DownProj.Forward(F.silu(gateUp[0]).mul_(gateUp[1]), context.Lora);
        return x.add_(mlp, PinnedScalars.One).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        InputLayernorm.Dispose();
        QkvProj.Dispose();
        QNorm.Dispose();
        KNorm.Dispose();
        OProj.Dispose();
        PostAttentionLayernorm.Dispose();
        GateUpProj.Dispose();
        DownProj.Dispose();
    }
}
