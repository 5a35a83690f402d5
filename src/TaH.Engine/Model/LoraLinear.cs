using TaH.Kernels;
using TaH.Kernels.Cpu;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TaH.Engine.Model;

/// <summary>
/// Which rows of a step's batch take the LoRA delta: the latent iterations (depth 2 and beyond),
/// never the plain depth-1 rows. Built once per step and shared by every projection.
/// </summary>
internal readonly struct LoraRows
{
    private LoraRows(Tensor? index, int[]? rows, bool all)
    {
        Index = index;
        Rows = rows;
        All = all;
    }

    public static LoraRows None => default;

    public static LoraRows Every => new(null, null, true);

    /// <summary>Row indices, when only some rows take the delta.</summary>
    public Tensor? Index { get; }

    /// <summary>The same indices on the host, for the CPU kernel.</summary>
    public int[]? Rows { get; }

    public bool All { get; }

    public bool Any => All || Index is not null;

    public static LoraRows Subset(Tensor index, int[] rows) => new(index, rows, false);
}

/// <summary>
/// A linear projection, optionally with a LoRA delta <c>s B (A x)</c> (s the adapter's scaling) added
/// to selected rows. The base weight is in the model's <see cref="WeightFormat"/>; the delta is
/// computed in fp32 (from weights exact in their storage), from the same fp32 input.
/// </summary>
internal sealed class LoraLinear(LinearWeight weight, Tensor? bias, LoraDelta? lora) : IDisposable
{
    /// <summary><c>[out, in]</c>.</summary>
    public LinearWeight Weight { get; } = weight;

    public Tensor? Bias { get; } = bias;

    /// <summary>The adapter's delta, or null without one.</summary>
    public LoraDelta? Lora { get; } = lora;

    public IEnumerable<Tensor> Parameters() =>
        new[] { Weight.Dense, Bias }.OfType<Tensor>().Concat(Lora?.Parameters() ?? []);

    /// <summary>Memory held: the base weight in its format, the bias and LoRA.</summary>
    public long Bytes => Weight.Bytes + (Bias is null ? 0 : Bias.numel() * Bias.ElementSize) + (Lora?.Bytes ?? 0);

    public Tensor Forward(Tensor x, in LoraRows rows)
    {
        var y = Weight.Forward(x, Bias);
        if (Lora is not null && rows.Any)
        {
            Lora.Add(x, y, rows);
        }

        return y;
    }

    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
        Lora?.Dispose();
    }
}

/// <summary>
/// The LoRA delta of one (possibly fused) projection. Projections fused at load (q|k|v, gate|up)
/// stack their A matrices; each part's B multiplies only its own rank slice of <c>A x</c> and
/// writes only its own output columns (a block-diagonal B).
/// </summary>
internal abstract class LoraDelta : IDisposable
{
    public abstract long Bytes { get; }

    public abstract IEnumerable<Tensor> Parameters();

    /// <summary><c>y[rows] += B (A x[rows])</c>, in place.</summary>
    public abstract void Add(Tensor x, Tensor y, in LoraRows rows);

    public abstract void Dispose();

    /// <summary>
    /// The delta of projections stacked along the output (each part's output size, and its
    /// A <c>[r, in]</c> and B <c>[out, r]</c> or none) at <paramref name="scaling"/>: for the CPU
    /// kernel formats without B's zeros (bf16 when every value is exact in it, else fp32), else as
    /// torch tensors on the model's device with the scaling folded into B.
    /// </summary>
    public static LoraDelta Create(IReadOnlyList<(long OutSize, Tensor? A, Tensor? B)> parts, long inFeatures, double scaling, bool cpuKernels, ScalarType dtype, Device device)
    {
        // Where each adapted part sits: its output rows, its slice of the stacked ranks, its B block.
        var segments = new List<LoraSegment>();
        long row = 0, rank = 0, packed = 0;
        foreach (var part in parts)
        {
            if (part.B is { } pb)
            {
                segments.Add(new LoraSegment((int)row, (int)part.OutSize, (int)rank, (int)pb.shape[1], packed));
                rank += pb.shape[1];
                packed += part.OutSize * pb.shape[1];
            }

            row += part.OutSize;
        }

        var adapted = parts.Where(p => p.B is not null).ToArray();
        var type = !cpuKernels ? dtype : adapted.All(p => ExactInBf16(p.A!) && ExactInBf16(p.B!)) ? ScalarType.BFloat16 : ScalarType.Float32;
        var on = cpuKernels ? CPU : device;
        var a = zeros(rank, inFeatures, dtype: type, device: on);
        var b = cpuKernels ? empty(packed, dtype: type) : zeros(row, rank, dtype: type, device: on);
        for (int i = 0; i < segments.Count; i++)
        {
            var s = segments[i];
            a.narrow(0, s.RankStart, s.Rank).copy_(adapted[i].A!);
            if (cpuKernels)
            {
                // The kernel reads each block packed, in transposed tiles, and scales A x itself.
                for (int first = 0; first < s.OutCount; first += LoraKernel.TileColumns)
                {
                    int width = Math.Min(LoraKernel.TileColumns, s.OutCount - first);
                    b.narrow(0, s.BOffset + ((long)first * s.Rank), (long)width * s.Rank).view(s.Rank, width).copy_(adapted[i].B!.narrow(0, first, width).t());
                }

                continue;
            }

            // Torch multiplies by the block-diagonal whole.
            using var scaled = adapted[i].B!.mul(PinnedScalars.Of(scaling));
            b.narrow(0, s.OutStart, s.OutCount).narrow(1, s.RankStart, s.Rank).copy_(scaled);
        }

        return cpuKernels ? new CpuLoraDelta(a, b, [.. segments], (int)row, (float)scaling) : new TorchLoraDelta(a, b);
    }

    /// <summary>Whether bf16 holds every value exactly (a bf16 checkpoint's adapter does).</summary>
    private static bool ExactInBf16(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.dtype == ScalarType.BFloat16 || t.to(ScalarType.BFloat16).to(t.dtype).eq(t).all().item<bool>();
    }
}

/// <summary>The delta with torch's ops and a dense block-diagonal B: the fp32 reference path and the GPU.</summary>
internal sealed class TorchLoraDelta(Tensor a, Tensor b) : LoraDelta
{
    /// <summary><c>[rank, in]</c>.</summary>
    public Tensor A { get; } = a;

    /// <summary><c>[out, rank]</c>, block-diagonal over the fused parts.</summary>
    public Tensor B { get; } = b;

    public override long Bytes => (A.numel() * A.ElementSize) + (B.numel() * B.ElementSize);

    public override IEnumerable<Tensor> Parameters() => [A, B];

    public override void Add(Tensor x, Tensor y, in LoraRows rows)
    {
        if (rows.All)
        {
            using var down = F.linear(x, A);
            using var delta = F.linear(down, B);
            y.add_(delta, PinnedScalars.One);
            return;
        }

        using var selected = x.index_select(0, rows.Index!);
        using var downSel = F.linear(selected, A);
        using var deltaSel = F.linear(downSel, B);
        y.index_add_(0, rows.Index!, deltaSel, PinnedScalars.One);
    }

    public override void Dispose()
    {
        A.Dispose();
        B.Dispose();
    }
}

/// <summary>
/// The delta in the project's CPU kernel (<see cref="LoraKernel"/>), B held as its blocks, both
/// matrices fp32 or (exactly) bf16: for the kernel weight formats, where torch's small fp32 GEMVs and B's zeros would make a depth-2
/// row cost far more than its share of bytes.
/// </summary>
internal sealed unsafe class CpuLoraDelta(Tensor a, Tensor packedB, LoraSegment[] segments, int outFeatures, float scaling) : LoraDelta
{
    private int[] _every = [];

    public override long Bytes => (a.numel() * a.ElementSize) + (packedB.numel() * packedB.ElementSize);

    public override IEnumerable<Tensor> Parameters() => [a, packedB];

    public override void Add(Tensor x, Tensor y, in LoraRows rows)
    {
        int[] selected = rows.All ? Every((int)x.shape[0]) : rows.Rows!;
        using var input = x.contiguous();
        int rank = (int)a.shape[0], inFeatures = (int)a.shape[1];
        float* px = TensorMemory.Pointer<float>(input), py = TensorMemory.Pointer<float>(y);
        if (a.dtype == ScalarType.BFloat16)
        {
            LoraKernel.Add(TensorMemory.Pointer<ushort>(a), rank, inFeatures, segments, TensorMemory.Pointer<ushort>(packedB), scaling, px, selected, py, outFeatures);
        }
        else
        {
            LoraKernel.Add(TensorMemory.Pointer<float>(a), rank, inFeatures, segments, TensorMemory.Pointer<float>(packedB), scaling, px, selected, py, outFeatures);
        }
    }

    private int[] Every(int n)
    {
        if (_every.Length != n)
        {
            _every = [.. Enumerable.Range(0, n)];
        }

        return _every;
    }

    public override void Dispose()
    {
        a.Dispose();
        packedB.Dispose();
    }
}
