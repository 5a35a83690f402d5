using TaH.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels;

/// <summary>
/// The small per-layer ops that cost many framework launches each: RMSNorm, the q/k norm + RoPE
/// split of a fused qkv projection, and the soft top-k embedding mix. The CPU implementation is
/// the TorchSharp composition the engine always used (so CPU results stay bit-identical); the
/// CUDA one runs one kernel per op.
/// </summary>
public interface IFusedOps
{
    /// <summary>Qwen3RMSNorm over the last dimension: statistics in fp32, scaled by <paramref name="weight"/>.</summary>
    Tensor RmsNorm(Tensor x, Tensor weight, double eps);

    /// <summary>
    /// Splits <paramref name="qkv"/> <c>[rows, (heads + 2 kvHeads) * headDim]</c> into q
    /// <c>[rows, heads, headDim]</c> and k, v <c>[rows, kvHeads, headDim]</c>; q and k are RMS-normed
    /// per head and rotated (rotate-half) with <paramref name="cos"/>, <paramref name="sin"/> <c>[rows, 1, headDim]</c>.
    /// </summary>
    (Tensor Q, Tensor K, Tensor V) QkvNormRope(Tensor qkv, int heads, int kvHeads, int headDim, Tensor qNorm, Tensor kNorm, Tensor cos, Tensor sin, double eps);

    /// <summary>
    /// The soft input of rows that go deeper: softmax over the first <paramref name="topK"/> columns
    /// of <paramref name="topValues"/>, mixing the rows of <paramref name="embeddings"/> named by
    /// <paramref name="topIds"/>. Returns <c>[rows, hidden]</c>.
    /// </summary>
    Tensor SoftTopKMix(Tensor topValues, Tensor topIds, int topK, Tensor embeddings);
}

/// <summary>The TorchSharp composition of each op (any device; the CPU path).</summary>
public sealed class TorchFusedOps : IFusedOps
{
    public static TorchFusedOps Instance { get; } = new();

    public Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normed = x32.mul(x32.mul(x32).mean([-1], keepdim: true).add_(PinnedScalars.Of(eps), PinnedScalars.One).rsqrt_());
        return weight.mul(normed.to(x.dtype)).MoveToOuterDisposeScope();
    }

    public (Tensor Q, Tensor K, Tensor V) QkvNormRope(Tensor qkv, int heads, int kvHeads, int headDim, Tensor qNorm, Tensor kNorm, Tensor cos, Tensor sin, double eps)
    {
        using var scope = NewDisposeScope();
        long rows = qkv.shape[0];
        var parts = qkv.split([heads * headDim, kvHeads * headDim, kvHeads * headDim], 1);
        var q = RmsNorm(parts[0].view(rows, heads, headDim), qNorm, eps);
        var k = RmsNorm(parts[1].view(rows, kvHeads, headDim), kNorm, eps);
        var v = parts[2].reshape(rows, kvHeads, headDim);
        q = ApplyRotary(q, cos, sin);
        k = ApplyRotary(k, cos, sin);
        return (q.MoveToOuterDisposeScope(), k.MoveToOuterDisposeScope(), v.MoveToOuterDisposeScope());
    }

    public Tensor SoftTopKMix(Tensor topValues, Tensor topIds, int topK, Tensor embeddings)
    {
        using var ids = topIds.narrow(1, 0, topK).reshape(-1);
        using var rowsOfEmbeddings = embeddings.index_select(0, ids);
        return MixRows(topValues, topK, rowsOfEmbeddings);
    }

    /// <summary>
    /// The mix of <see cref="SoftTopKMix"/> over embedding rows already gathered,
    /// <c>[rows * topK, hidden]</c> (for embeddings held in a format torch cannot index).
    /// </summary>
    public static Tensor MixRows(Tensor topValues, int topK, Tensor rowsOfEmbeddings)
    {
        using var scope = NewDisposeScope();
        long rows = topValues.shape[0];
        var weights = topValues.narrow(1, 0, topK).softmax(1);
        var grouped = rowsOfEmbeddings.view(rows, topK, rowsOfEmbeddings.shape[1]);
        return weights.to(grouped.dtype).unsqueeze(1).bmm(grouped).squeeze(1).MoveToOuterDisposeScope();
    }

    /// <summary>Rotate-half RoPE.</summary>
    private static Tensor ApplyRotary(Tensor x, Tensor cos, Tensor sin)
    {
        var halves = x.chunk(2, -1);
        var rotated = cat([halves[1].neg(), halves[0]], -1);
        return x.mul(cos).add_(rotated.mul_(sin), PinnedScalars.One);
    }
}

/// <summary>
/// Chooses the ops for a device: CUDA kernels on a GPU, the TorchSharp composition elsewhere.
/// <c>TAH_CUDA_KERNELS=0</c> keeps a GPU on the TorchSharp composition (for A/B comparisons).
/// </summary>
public static class FusedOps
{
    public static bool KernelsEnabled => Environment.GetEnvironmentVariable("TAH_CUDA_KERNELS") != "0";

    public static IFusedOps For(Device device) =>
        device.type == DeviceType.CUDA && KernelsEnabled ? new CudaFusedOps() : TorchFusedOps.Instance;

    public static IPagedAttention AttentionFor(Device device) =>
        device.type == DeviceType.CUDA && KernelsEnabled ? new CudaPagedAttention() : new CpuPagedAttention();
}
