namespace TaH.Kernels.Cuda;

/// <summary>The define sets each kernel module is built with: dtype, head size, GQA group size.</summary>
public static class KernelConfigurations
{
    public static readonly int[] HeadDims = [64, 128];

    public static readonly int[] Groups = [1, 2, 4, 8];

    public static readonly string[] DTypes = ["bf16", "fp16"];

    public static string[] Attention(string dtype, int headDim, int groups, PrefillVariant? prefill = null)
    {
        var v = prefill ?? PrefillVariant.Default;
        return [.. DType(dtype), $"HEAD_DIM={headDim}", $"GROUPS={groups}", $"PF_HPB={v.HeadsPerBlock}", $"PF_MT={v.RowTiles}", $"PF_BN={v.KeyTile}"];
    }

    public static string[] Fused(string dtype, int headDim) => [.. DType(dtype), $"HEAD_DIM={headDim}"];

    /// <summary>Every (file, defines) pair the engine can ask for.</summary>
    public static IEnumerable<(string File, string[] Defines)> All()
    {
        foreach (string dtype in DTypes)
        {
            foreach (int headDim in HeadDims)
            {
                foreach (int groups in Groups)
                {
                    yield return ("paged_attention.cu", Attention(dtype, headDim, groups));
                }

                yield return ("fused.cu", Fused(dtype, headDim));
            }
        }

        // The other prefill blockings the benchmark compares (Qwen3-1.7B's shape).
        foreach (var variant in new PrefillVariant[] { new(1, 64, 1), new(1, 64, 2), new(2, 64, 2), new(2, 32, 1), new(2, 32, 2) })
        {
            yield return ("paged_attention.cu", Attention("bf16", 128, 2, variant));
        }
    }

    public static IReadOnlyList<string> KernelsOf(string file) => file switch
    {
        "paged_attention.cu" => ["kv_write", "decode_attention", "decode_reduce", "prefill_attention"],
        "fused.cu" => ["rms_norm", "qk_norm_rope", "soft_topk_mix", "sample_top_k_top_p"],
        _ => [],
    };

    private static string[] DType(string dtype) => dtype switch
    {
        "bf16" => ["TAH_BF16"],
        "fp16" => [],
        _ => throw new ArgumentException($"unsupported kernel dtype '{dtype}' (bf16 or fp16)", nameof(dtype)),
    };
}

/// <summary>
/// The prefill kernel's blocking: m16 row tiles per warp (each K/V fragment read from shared
/// memory feeds that many matrix ops), keys per tile, and query heads of one GQA group per block.
/// </summary>
public readonly record struct PrefillVariant(int RowTiles, int KeyTile, int HeadsPerBlock)
{
    /// <summary>Query rows per block and head: 4 warps of <see cref="RowTiles"/> x 16.</summary>
    public int TileRows => 64 * RowTiles;

    /// <summary>
    /// The fastest blocking measured on an H100 (Qwen3-1.7B heads, 4 x 4096 causal and duo-causal):
    /// two row tiles per warp, 64 keys, one head per block.
    /// </summary>
    public static PrefillVariant Default { get; } = new(2, 64, 1);

    public uint SharedBytes(int headDim) =>
        (uint)((((HeadsPerBlock * TileRows) + (4 * KeyTile)) * (headDim + 8) * 2) + (((2 * KeyTile) + (2 * TileRows)) * 4));

    public override string ToString() => $"{RowTiles}x16 rows/warp, {KeyTile} keys, {HeadsPerBlock} head(s)/block";
}
