using TorchSharp;

namespace TaH.Kernels;

/// <summary>One layer's slice of the paged KV pool: <c>[slots, kvHeads, headDim]</c> each.</summary>
public readonly record struct LayerKv(torch.Tensor Keys, torch.Tensor Values);

/// <summary>
/// Attention over the paged, per-depth KV cache under the duo-causal rule. One implementation
/// runs on the CPU (the reference); a CUDA one sits beside it.
/// </summary>
public interface IPagedAttention
{
    /// <summary>Turns a step's batch into the metadata every layer reuses.</summary>
    AttentionPlan Prepare(AttentionBatch batch, torch.Device device);

    /// <summary>
    /// Writes the rows' keys and values into <paramref name="kv"/> at their slots, then returns the
    /// attention output <c>[rows, heads, headDim]</c> for queries <paramref name="q"/>
    /// <c>[rows, heads, headDim]</c>; <paramref name="k"/>, <paramref name="v"/> are
    /// <c>[rows, kvHeads, headDim]</c>.
    /// </summary>
    torch.Tensor Forward(AttentionPlan plan, torch.Tensor q, torch.Tensor k, torch.Tensor v, LayerKv kv, double scale);
}

/// <summary>Per-step metadata of an <see cref="IPagedAttention"/>; owns the tensors it made.</summary>
public abstract class AttentionPlan(AttentionBatch batch) : IDisposable
{
    public AttentionBatch Batch { get; } = batch;

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected abstract void Dispose(bool disposing);
}
