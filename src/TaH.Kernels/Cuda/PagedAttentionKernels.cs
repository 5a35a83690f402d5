namespace TaH.Kernels.Cuda;

/// <summary>Device pointers of a step's uploaded <see cref="AttentionLayout"/> and decode workspace.</summary>
public readonly record struct LayoutPointers(IntPtr Ints, IntPtr Slots, IntPtr WorkspaceAcc, IntPtr WorkspaceMl);

/// <summary>
/// Launches the paged attention kernels on raw device pointers (used by
/// <see cref="CudaPagedAttention"/> on TorchSharp tensors and by the tests on their own buffers).
/// </summary>
public sealed class PagedAttentionKernels
{
    private const int DecodeThreads = 128;
    private readonly CudaModule _module;

    /// <param name="prefill">The prefill kernel's blocking; <see cref="PrefillVariant.Default"/> unless given.</param>
    public PagedAttentionKernels(CudaDevice device, string dtype, int headDim, int groups, PrefillVariant? prefill = null)
    {
        if (headDim is not (64 or 128))
        {
            throw new ArgumentException($"the CUDA attention supports head_dim 64 and 128 (got {headDim})", nameof(headDim));
        }

        if (groups is not (1 or 2 or 4 or 8))
        {
            throw new ArgumentException($"the CUDA attention supports 1, 2, 4 or 8 query heads per KV head (got {groups})", nameof(groups));
        }

        var variant = prefill ?? PrefillVariant.Default;
        if (variant.HeadsPerBlock < 1 || groups % variant.HeadsPerBlock != 0 || variant.RowTiles is not (1 or 2) || variant.KeyTile is not (32 or 64))
        {
            throw new ArgumentException($"unsupported prefill blocking {variant} for group size {groups}", nameof(prefill));
        }

        Device = device;
        HeadDim = headDim;
        Groups = groups;
        Prefill = variant;
        _module = device.Module("paged_attention.cu", KernelConfigurations.Attention(dtype, headDim, groups, variant));
    }

    public CudaDevice Device { get; }

    public int HeadDim { get; }

    public int Groups { get; }

    public PrefillVariant Prefill { get; }

    public (int Registers, int LocalBytes, int StaticShared) Resources(string kernel) => _module[kernel].Resources();

    /// <summary>Floats of decode workspace (partial outputs, then max and sum) a layout needs.</summary>
    public (long Acc, long Ml) WorkspaceSize(AttentionLayout layout, int heads)
    {
        var (_, maxSplits) = layout.DecodeSplits(heads / Groups, Device.Multiprocessors);
        long partials = maxSplits > 1 ? (long)layout.DecodeItems * heads * maxSplits : 0;
        return (partials * HeadDim, partials * 2);
    }

    /// <summary>Writes the rows' keys/values into the pool, then attention for every row into <paramref name="output"/>.</summary>
    public void Run(AttentionLayout layout, LayoutPointers p, IntPtr q, IntPtr k, IntPtr v, IntPtr keyPool, IntPtr valuePool, IntPtr output, int heads, int kvHeads, double scale)
    {
        Device.MakeCurrent();
        if (layout.TileRows != Prefill.TileRows)
        {
            throw new ArgumentException($"the layout has prefill tiles of {layout.TileRows} rows, the kernel {Prefill.TileRows}");
        }

        if (heads != kvHeads * Groups)
        {
            throw new ArgumentException($"{heads} heads over {kvHeads} KV heads does not match the compiled group size {Groups}");
        }

        WriteKv(layout, p, k, v, keyPool, valuePool, kvHeads);
        Attend(layout, p, q, keyPool, valuePool, output, heads, kvHeads, scale);
    }

    public void WriteKv(AttentionLayout layout, LayoutPointers p, IntPtr k, IntPtr v, IntPtr keyPool, IntPtr valuePool, int kvHeads)
    {
        long chunks = (long)layout.RowCount * kvHeads * HeadDim / 8;
        _module["kv_write"].Launch(((uint)((chunks + 255) / 256), 1, 1), 256, 0, k, v, keyPool, valuePool, p.Slots, layout.RowCount, kvHeads);
    }

    /// <summary>Attention alone (the pool already holds the step's entries): what the benchmarks time.</summary>
    public void Attend(AttentionLayout layout, LayoutPointers p, IntPtr q, IntPtr keyPool, IntPtr valuePool, IntPtr output, int heads, int kvHeads, double scale)
    {
        float scaleLog2 = (float)(scale * 1.4426950408889634);
        IntPtr Ints(int offset) => p.Ints + (offset * sizeof(int));
        if (layout.DecodeItems > 0)
        {
            var (splitSize, maxSplits) = layout.DecodeSplits(kvHeads, Device.Multiprocessors);
            _module["decode_attention"].Launch(
                ((uint)maxSplits, (uint)kvHeads, (uint)layout.DecodeItems), DecodeThreads, 0,
                q, keyPool, valuePool, output, p.WorkspaceAcc, p.WorkspaceMl,
                Ints(layout.DecodeMetaOffset), Ints(layout.BlockTablesOffset),
                heads, kvHeads, layout.BlockSize, splitSize, maxSplits, scaleLog2);
            if (maxSplits > 1)
            {
                _module["decode_reduce"].Launch(
                    ((uint)heads, (uint)layout.DecodeItems, 1), (uint)HeadDim, 0,
                    p.WorkspaceAcc, p.WorkspaceMl, output, Ints(layout.DecodeMetaOffset), heads, splitSize, maxSplits);
            }
        }

        if (layout.TileCount > 0)
        {
            _module["prefill_attention"].Launch(
                ((uint)(heads / Prefill.HeadsPerBlock), (uint)layout.TileCount, 1), (uint)(128 * Prefill.HeadsPerBlock), Prefill.SharedBytes(HeadDim),
                q, keyPool, valuePool, output,
                Ints(layout.TileMetaOffset), Ints(layout.TileRowsOffset), Ints(layout.RowPositionOffset), Ints(layout.RowDepthOffset),
                Ints(layout.BlockTablesOffset), Ints(layout.EntryPositionsOffset),
                heads, kvHeads, layout.BlockSize, scaleLog2);
        }
    }
}
