using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels.Cuda;

/// <summary>
/// <see cref="IFusedOps"/> as single CUDA kernels on bf16/fp16 tensors. Anything the kernels do
/// not cover (fp32 tensors, odd sizes) falls back to the TorchSharp composition.
/// </summary>
public sealed class CudaFusedOps : IFusedOps
{
    private readonly ConcurrentDictionary<(string, int, int), CudaModule> _modules = new();

    private CudaModule Module(Tensor like, int headDim)
    {
        var device = TorchCuda.Device(like.device);
        string dtype = TorchCuda.KernelDType(like.dtype);
        return _modules.GetOrAdd((dtype, headDim, device.Ordinal),
            key => device.Module("fused.cu", KernelConfigurations.Fused(key.Item1, key.Item2)));
    }

    private static bool Covered(Tensor t) =>
        t.device_type == DeviceType.CUDA && t.dtype is ScalarType.BFloat16 or ScalarType.Float16;

    public Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        if (!Covered(x) || x.dtype != weight.dtype)
        {
            return TorchFusedOps.Instance.RmsNorm(x, weight, eps);
        }

        x = x.contiguous();
        long n = x.shape[^1];
        long rows = x.numel() / n;
        var y = empty_like(x);
        int threads = n >= 1024 ? 512 : 128;
        Module(x, 128)["rms_norm"].Launch(((uint)rows, 1, 1), (uint)threads, 0,
            TorchCuda.Pointer(x), TorchCuda.Pointer(weight.contiguous()), TorchCuda.Pointer(y), (int)n, (float)eps);
        return y;
    }

    public (Tensor Q, Tensor K, Tensor V) QkvNormRope(Tensor qkv, int heads, int kvHeads, int headDim, Tensor qNorm, Tensor kNorm, Tensor cos, Tensor sin, double eps)
    {
        if (!Covered(qkv) || headDim is not (64 or 128) || cos.dtype != qkv.dtype)
        {
            return TorchFusedOps.Instance.QkvNormRope(qkv, heads, kvHeads, headDim, qNorm, kNorm, cos, sin, eps);
        }

        qkv = qkv.contiguous();
        long rows = qkv.shape[0];
        var q = empty(new[] { rows, heads, headDim }, qkv.dtype, qkv.device);
        var k = empty(new[] { rows, kvHeads, headDim }, qkv.dtype, qkv.device);
        var v = empty(new[] { rows, kvHeads, headDim }, qkv.dtype, qkv.device);
        long warps = rows * (heads + (2 * kvHeads));
        Module(qkv, headDim)["qk_norm_rope"].Launch(((uint)((warps + 7) / 8), 1, 1), 256, 0,
            TorchCuda.Pointer(qkv), TorchCuda.Pointer(qNorm.contiguous()), TorchCuda.Pointer(kNorm.contiguous()),
            TorchCuda.Pointer(cos.contiguous()), TorchCuda.Pointer(sin.contiguous()),
            TorchCuda.Pointer(q), TorchCuda.Pointer(k), TorchCuda.Pointer(v), (int)rows, heads, kvHeads, (float)eps);
        return (q, k, v);
    }

    public Tensor SoftTopKMix(Tensor topValues, Tensor topIds, int topK, Tensor embeddings)
    {
        long hidden = embeddings.shape[1];
        if (!Covered(embeddings) || hidden % 8 != 0)
        {
            return TorchFusedOps.Instance.SoftTopKMix(topValues, topIds, topK, embeddings);
        }

        var values = topValues.to(ScalarType.Float32).contiguous();
        var ids = topIds.to(ScalarType.Int64).contiguous();
        long rows = values.shape[0];
        var output = empty(new[] { rows, hidden }, embeddings.dtype, embeddings.device);
        Module(embeddings, 128)["soft_topk_mix"].Launch(((uint)rows, 1, 1), 256, (uint)(topK * sizeof(float)),
            TorchCuda.Pointer(values), TorchCuda.Pointer(ids), TorchCuda.Pointer(embeddings.contiguous()), TorchCuda.Pointer(output),
            topK, (int)values.shape[1], (int)hidden);
        return output;
    }
}

/// <summary>
/// Sampling on the GPU: temperature, top-k, top-p (over the renormalised top-k) and one draw per
/// row from the caller's uniform numbers; temperature 0 is argmax. Logits are fp32 <c>[rows, vocab]</c>.
/// </summary>
public sealed class CudaSampler
{
    private readonly ConcurrentDictionary<int, CudaModule> _modules = new();

    public long[] Sample(Tensor logits, float[] temperature, int[] topK, float[] topP, float[] uniform)
    {
        var device = TorchCuda.Device(logits.device);
        var module = _modules.GetOrAdd(device.Ordinal, _ => device.Module("fused.cu", KernelConfigurations.Fused("bf16", 128)));
        using var scope = NewDisposeScope();
        var x = logits.to(ScalarType.Float32).contiguous();
        long rows = x.shape[0];
        var t = tensor(temperature).to(x.device);
        var k = tensor(topK).to(x.device);
        var p = tensor(topP).to(x.device);
        var u = tensor(uniform).to(x.device);
        var output = empty(rows, dtype: ScalarType.Int64, device: x.device);
        module["sample_top_k_top_p"].Launch(((uint)rows, 1, 1), 1024, 0,
            TorchCuda.Pointer(x), (int)x.shape[1], TorchCuda.Pointer(t), TorchCuda.Pointer(k), TorchCuda.Pointer(p), TorchCuda.Pointer(u), TorchCuda.Pointer(output));
        return output.cpu().data<long>().ToArray();
    }
}
