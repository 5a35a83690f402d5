using TaH.Kernels;
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
    private LoraRows(Tensor? index, bool all)
    {
        Index = index;
        All = all;
    }

    public static LoraRows None => default;

    public static LoraRows Every => new(null, true);

    /// <summary>Row indices, when only some rows take the delta.</summary>
    public Tensor? Index { get; }

    public bool All { get; }

    public bool Any => All || Index is not null;

    public static LoraRows Subset(Tensor index) => new(index, false);
}

/// <summary>
/// A linear projection, optionally with a LoRA delta <c>B (A x)</c> (scaling folded into B) added
/// to selected rows. Projections fused at load (q|k|v, gate|up) stack their A matrices and place
/// their B matrices block-diagonally, so one fused delta equals the separate ones. The base weight
/// is in the model's <see cref="WeightFormat"/>; the delta is fp32, from the same fp32 input.
/// </summary>
internal sealed class LoraLinear(LinearWeight weight, Tensor? bias, Tensor? loraA, Tensor? loraB) : IDisposable
{
    /// <summary><c>[out, in]</c>.</summary>
    public LinearWeight Weight { get; } = weight;

    public Tensor? Bias { get; } = bias;

    /// <summary><c>[rank, in]</c>, or null without an adapter.</summary>
    public Tensor? LoraA { get; } = loraA;

    /// <summary><c>[out, rank]</c>, already multiplied by the scaling.</summary>
    public Tensor? LoraB { get; } = loraB;

    public IEnumerable<Tensor> Parameters() =>
        new[] { Weight.Dense, Bias, LoraA, LoraB }.OfType<Tensor>();

    /// <summary>Memory held: the base weight in its format, the bias and LoRA.</summary>
    public long Bytes => Weight.Bytes + new[] { Bias, LoraA, LoraB }.OfType<Tensor>().Sum(t => t.numel() * t.ElementSize);

    public Tensor Forward(Tensor x, in LoraRows rows)
    {
        var y = Weight.Forward(x, Bias);
        if (LoraA is null || LoraB is null || !rows.Any)
        {
            return y;
        }

        if (rows.All)
        {
            using var down = F.linear(x, LoraA);
            using var delta = F.linear(down, LoraB);
            return y.add_(delta, PinnedScalars.One);
        }

        using var selected = x.index_select(0, rows.Index!);
        using var downSel = F.linear(selected, LoraA);
        using var deltaSel = F.linear(downSel, LoraB);
        return y.index_add_(0, rows.Index!, deltaSel, PinnedScalars.One);
    }

    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
        LoraA?.Dispose();
        LoraB?.Dispose();
    }
}
