using TorchSharp;
using static TorchSharp.torch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace TaH.Kernels.Cpu;

/// <summary>
/// The per-layer small ops in place on fp32 CPU memory, one call each instead of a dozen
/// TorchSharp ops (which at batch 1 cost more than the work: some 40 dispatches per layer). For
/// the kernel weight formats, whose steps are short enough for that to matter; the fp32 path keeps
/// <see cref="TorchFusedOps"/>, bit for bit. Same formulas, another summation order.
/// </summary>
public sealed unsafe class CpuFusedOps : IFusedOps
{
    public static CpuFusedOps Instance { get; } = new();

    public Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        if (!Applies(x))
        {
            return TorchFusedOps.Instance.RmsNorm(x, weight, eps);
        }

        using var input = x.contiguous();
        using var w = weight.contiguous();
        var output = empty(x.shape, dtype: ScalarType.Float32);
        int n = (int)x.shape[^1];
        long rows = x.numel() / n;
        float* source = TensorMemory.Pointer<float>(input), target = TensorMemory.Pointer<float>(output), scale = TensorMemory.Pointer<float>(w);
        for (long r = 0; r < rows; r++)
        {
            Normalize(source + (r * n), target + (r * n), scale, n, (float)eps);
        }

        return output;
    }

    /// <summary>w * (x / sqrt(mean(x^2) + eps)) over one row of n.</summary>
    private static void Normalize(float* x, float* y, float* weight, int n, float eps)
    {
        var row = new ReadOnlySpan<float>(x, n);
        var result = new Span<float>(y, n);
        float inverse = 1f / MathF.Sqrt((TensorPrimitives.SumOfSquares(row) / n) + eps);
        TensorPrimitives.Multiply(row, inverse, result);
        TensorPrimitives.Multiply(result, new ReadOnlySpan<float>(weight, n), result);
    }

    public (Tensor Q, Tensor K, Tensor V) QkvNormRope(Tensor qkv, int heads, int kvHeads, int headDim, Tensor qNorm, Tensor kNorm, Tensor cos, Tensor sin, double eps)
    {
        if (!Applies(qkv) || !Applies(cos) || !Applies(sin))
        {
            return TorchFusedOps.Instance.QkvNormRope(qkv, heads, kvHeads, headDim, qNorm, kNorm, cos, sin, eps);
        }

        long rows = qkv.shape[0];
        using var input = qkv.contiguous();
        using var qw = qNorm.contiguous();
        using var kw = kNorm.contiguous();
        using var c = cos.contiguous();
        using var s = sin.contiguous();
        var q = empty(rows, heads, headDim, dtype: ScalarType.Float32);
        var k = empty(rows, kvHeads, headDim, dtype: ScalarType.Float32);
        var v = empty(rows, kvHeads, headDim, dtype: ScalarType.Float32);
        float* source = TensorMemory.Pointer<float>(input), pq = TensorMemory.Pointer<float>(q), pk = TensorMemory.Pointer<float>(k), pv = TensorMemory.Pointer<float>(v);
        float* wq = TensorMemory.Pointer<float>(qw), wk = TensorMemory.Pointer<float>(kw), pc = TensorMemory.Pointer<float>(c), ps = TensorMemory.Pointer<float>(s);
        int width = (heads + (2 * kvHeads)) * headDim;
        float* scratch = stackalloc float[headDim];
        for (long r = 0; r < rows; r++)
        {
            float* row = source + (r * width), rc = pc + (r * headDim), rs = ps + (r * headDim);
            for (int h = 0; h < heads; h++)
            {
                NormRope(row + (h * headDim), pq + (((r * heads) + h) * headDim), wq, rc, rs, headDim, (float)eps, scratch);
            }

            for (int h = 0; h < kvHeads; h++)
            {
                NormRope(row + ((heads + h) * headDim), pk + (((r * kvHeads) + h) * headDim), wk, rc, rs, headDim, (float)eps, scratch);
            }

            new ReadOnlySpan<float>(row + ((heads + kvHeads) * headDim), kvHeads * headDim).CopyTo(new Span<float>(pv + (r * kvHeads * headDim), kvHeads * headDim));
        }

        return (q, k, v);
    }

    /// <summary>RMS-norm one head, then rotate-half RoPE: y = x cos + (-x2, x1) sin.</summary>
    private static void NormRope(float* x, float* y, float* weight, float* cos, float* sin, int n, float eps, float* normed)
    {
        Normalize(x, normed, weight, n, eps);
        int half = n / 2;
        var first = new ReadOnlySpan<float>(normed, half);
        var second = new ReadOnlySpan<float>(normed + half, half);
        var low = new Span<float>(y, half);
        var high = new Span<float>(y + half, half);
        // low = x1 cos1 - x2 sin1; high = x2 cos2 + x1 sin2 (each product rounded, as torch does).
        TensorPrimitives.Multiply(second, new ReadOnlySpan<float>(sin, half), low);
        TensorPrimitives.Negate(low, low);
        TensorPrimitives.MultiplyAdd(first, new ReadOnlySpan<float>(cos, half), low, low);
        TensorPrimitives.Multiply(first, new ReadOnlySpan<float>(sin + half, half), high);
        TensorPrimitives.MultiplyAdd(second, new ReadOnlySpan<float>(cos + half, half), high, high);
    }

    public Tensor SoftTopKMix(Tensor topValues, Tensor topIds, int topK, Tensor embeddings) =>
        TorchFusedOps.Instance.SoftTopKMix(topValues, topIds, topK, embeddings);

    private static bool Applies(Tensor t) => t.dtype == ScalarType.Float32 && t.device_type == DeviceType.CPU;
}
