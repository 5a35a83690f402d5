using System.Buffers;
using System.Runtime.InteropServices;
using TorchSharp;

namespace TaH.Engine.Generation;

/// <summary>
/// A step's logit rows as floats, in pooled arrays: a vocabulary-sized row is a large-object
/// allocation, and one per sampled token per step would pile up in the large-object heap between
/// full collections (hundreds of megabytes of garbage under steady traffic).
/// </summary>
internal sealed class LogitRows : IDisposable
{
    private readonly float[][] _rows;
    private readonly int[] _lengths;

    /// <param name="tensors">The rows; a null one is left empty (its floats are elsewhere).</param>
    public LogitRows(IReadOnlyList<torch.Tensor?> tensors)
    {
        _rows = new float[tensors.Count][];
        _lengths = new int[tensors.Count];

        // One row per sequence, so the cores the forward used are free to copy them in parallel.
        RowParallel.For(tensors.Count, i => Copy(tensors, i));
    }

    private void Copy(IReadOnlyList<torch.Tensor?> tensors, int i)
    {
        if (tensors[i] is null)
        {
            _rows[i] = [];
            return;
        }

        using var scope = torch.NewDisposeScope();
        var host = tensors[i]!.to(torch.ScalarType.Float32, torch.CPU).contiguous();
        _lengths[i] = (int)host.numel();
        _rows[i] = ArrayPool<float>.Shared.Rent(_lengths[i]);
        MemoryMarshal.Cast<byte, float>(host.bytes).CopyTo(_rows[i]);
    }

    /// <summary>Row <paramref name="i"/>, valid until this is disposed.</summary>
    public ReadOnlyMemory<float> this[int i] => _rows[i].AsMemory(0, _lengths[i]);

    public void Dispose()
    {
        foreach (var row in _rows)
        {
            if (row.Length > 0)
            {
                ArrayPool<float>.Shared.Return(row);
            }
        }
    }
}
