namespace TaH.Kernels.Cuda;

/// <summary>The define sets each kernel module is built with: dtype, head size, GQA group size.</summary>
public static class KernelConfigurations
{
    public static readonly int[] HeadDims = [64, 128];

    public static readonly int[] Groups = [1, 2, 4, 8];

    public static readonly string[] DTypes = ["bf16", "fp16"];

    public static string[] Attention(string dtype, int headDim, int groups) =>
        [.. DType(dtype), $"HEAD_DIM={headDim}", $"GROUPS={groups}"];

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
