using TaH.Kernels.Cpu;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TaH.Engine.Model;

/// <summary>
/// The matrix <c>[out, in]</c> of a linear map in one <see cref="WeightFormat"/>: what
/// <see cref="LoraLinear"/>, the lm head, the embedding and the decider multiply by. Inputs and
/// outputs are fp32 (or the dense tensor's type on a GPU); only how the weights are held and
/// multiplied differs.
/// </summary>
internal abstract class LinearWeight : IDisposable
{
    public abstract WeightFormat Format { get; }

    public abstract long OutFeatures { get; }

    public abstract long InFeatures { get; }

    /// <summary>Memory the weights hold.</summary>
    public abstract long Bytes { get; }

    /// <summary>The torch tensor of a dense weight (what the CUDA kernels and torch's ops read); null when quantised.</summary>
    public virtual Tensor? Dense => null;

    /// <summary><c>x [rows, in] W^T + bias</c>: <c>[rows, out]</c>.</summary>
    public abstract Tensor Forward(Tensor x, Tensor? bias);

    /// <summary>Rows <paramref name="ids"/> of W, as fp32 <c>[ids, in]</c> (embedding lookups).</summary>
    public abstract Tensor Rows(Tensor ids);

    public abstract void Dispose();

    /// <summary>
    /// Builds the weight from <paramref name="parts"/> stacked along the output rows (projections
    /// fused at load): for a kernel format in whatever float type the checkpoint holds, converted
    /// a chunk of rows at a time, the parts staying the caller's to free at once; for fp32 in the
    /// model's type and device, one part taken over as it is.
    /// </summary>
    public static LinearWeight Create(IReadOnlyList<Tensor> parts, WeightFormat format)
    {
        long rows = parts.Sum(p => p.shape[0]), columns = parts[0].shape[1];
        switch (format)
        {
            case WeightFormat.Q8_0 or WeightFormat.Q4_0:
            {
                BlockMatrix matrix = format == WeightFormat.Q8_0
                    ? new Q8_0Matrix(checked((int)rows), checked((int)columns))
                    : new Q4_0Matrix(checked((int)rows), checked((int)columns));
                // bf16 (what releases store) widens inside the quantiser; other types convert first.
                bool bf16 = parts.All(p => p.dtype == ScalarType.BFloat16);
                FillRows(parts, bf16 ? ScalarType.BFloat16 : ScalarType.Float32, (first, chunk) =>
                {
                    if (bf16)
                    {
                        matrix.QuantizeBFloat16(first, Values<ushort>(chunk));
                    }
                    else
                    {
                        matrix.Quantize(first, Values<float>(chunk));
                    }
                });
                return new BlockWeight(matrix, format);
            }

            case WeightFormat.Bf16:
            {
                var matrix = new Bf16Matrix(checked((int)rows), checked((int)columns));
                FillRows(parts, ScalarType.BFloat16, (first, chunk) => matrix.Store(first, Values<ushort>(chunk)));
                return new Bf16Weight(matrix);
            }

            default:
                // Dense parts come in the model's type and device already.
                return new DenseWeight(parts.Count == 1 ? parts[0] : cat(parts.ToArray(), 0));
        }
    }

    /// <summary>A contiguous CPU tensor's elements, read in place.</summary>
    private static unsafe ReadOnlySpan<T> Values<T>(Tensor t)
        where T : unmanaged =>
        new(TensorMemory.Pointer<T>(t), checked((int)t.numel()));

    /// <summary>
    /// Hands the rows of the stacked parts to <paramref name="fill"/> as contiguous CPU tensors of
    /// <paramref name="type"/>: a part already so goes whole, without a copy; others in converted
    /// chunks of 16 MB.
    /// </summary>
    private static void FillRows(IReadOnlyList<Tensor> parts, ScalarType type, Action<int, Tensor> fill)
    {
        const long chunkValues = 1 << 22;
        int first = 0;
        foreach (var part in parts)
        {
            long rows = part.shape[0];
            if (part.dtype == type && part.device_type == DeviceType.CPU && part.is_contiguous())
            {
                fill(first, part);
            }
            else
            {
                long step = Math.Max(1, chunkValues / part.shape[1]);
                for (long r = 0; r < rows; r += step)
                {
                    using var slice = part.narrow(0, r, Math.Min(step, rows - r));
                    using var chunk = slice.to(type, CPU).contiguous();
                    fill(first + (int)r, chunk);
                }
            }

            first += (int)rows;
        }
    }
}

/// <summary>A torch tensor and torch's <c>linear</c>: fp32 on the CPU (the reference path, unchanged), bf16 on a GPU.</summary>
internal sealed class DenseWeight(Tensor weight) : LinearWeight
{
    public override WeightFormat Format => WeightFormat.Fp32;

    public override long OutFeatures => weight.shape[0];

    public override long InFeatures => weight.shape[1];

    public override long Bytes => weight.numel() * weight.ElementSize;

    public override Tensor Dense => weight;

    public override Tensor Forward(Tensor x, Tensor? bias) => F.linear(x, weight, bias);

    public override Tensor Rows(Tensor ids) => weight.index_select(0, ids);

    public override void Dispose() => weight.Dispose();
}

/// <summary>Weights the project's CPU kernels multiply in place in TorchSharp's memory.</summary>
internal abstract unsafe class KernelWeight : LinearWeight
{
    public override Tensor Forward(Tensor x, Tensor? bias)
    {
        if (x.dtype != ScalarType.Float32 || x.device_type != DeviceType.CPU || x.dim() != 2 || x.shape[1] != InFeatures)
        {
            throw new ArgumentException($"{Format.Name()} weights multiply fp32 CPU rows of {InFeatures} (got {x.dtype} [{string.Join(", ", x.shape)}] on {x.device})");
        }

        using var input = x.contiguous();
        using var contiguousBias = bias?.contiguous();
        var y = empty(x.shape[0], OutFeatures, dtype: ScalarType.Float32);
        Multiply(Pointer(input), (int)x.shape[0], Pointer(y), contiguousBias is null ? null : Pointer(contiguousBias));
        return y;
    }

    public override Tensor Rows(Tensor ids)
    {
        var indices = ids.data<long>().ToArray();
        var rows = empty(indices.Length, InFeatures, dtype: ScalarType.Float32);
        float* p = Pointer(rows);
        for (int i = 0; i < indices.Length; i++)
        {
            Row(checked((int)indices[i]), new Span<float>(p + (i * InFeatures), (int)InFeatures));
        }

        return rows;
    }

    /// <summary><c>y [rows, out] = x [rows, in] W^T + bias</c> on raw contiguous fp32 rows.</summary>
    public abstract void Multiply(float* x, int rows, float* y, float* bias);

    protected abstract void Row(int row, Span<float> destination);

    private static float* Pointer(Tensor t) => TensorMemory.Pointer<float>(t);
}

/// <summary>A GGUF-style block format (Q8_0, Q4_0) and its kernels.</summary>
internal sealed unsafe class BlockWeight(BlockMatrix matrix, WeightFormat format) : KernelWeight
{
    public override WeightFormat Format => format;

    public override long OutFeatures => matrix.Rows;

    public override long InFeatures => matrix.Columns;

    public override long Bytes => matrix.Bytes;

    public override void Multiply(float* x, int rows, float* y, float* bias) => matrix.Multiply(x, rows, y, bias);

    protected override void Row(int row, Span<float> destination) => matrix.DequantizeRow(row, destination);

    public override void Dispose() => matrix.Dispose();
}

internal sealed unsafe class Bf16Weight(Bf16Matrix matrix) : KernelWeight
{
    public override WeightFormat Format => WeightFormat.Bf16;

    public override long OutFeatures => matrix.Rows;

    public override long InFeatures => matrix.Columns;

    public override long Bytes => matrix.Bytes;

    public override void Multiply(float* x, int rows, float* y, float* bias) => Bf16Gemm.Multiply(matrix, x, rows, y, bias);

    protected override void Row(int row, Span<float> destination) => matrix.Row(row, destination);

    public override void Dispose() => matrix.Dispose();
}
