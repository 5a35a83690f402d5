using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels.Cuda;

/// <summary>
/// <see cref="IPagedAttention"/> on the GPU: the duo-causal paged kernels launched on the
/// TorchSharp tensors' own device memory (no copies), on the default stream TorchSharp uses.
/// Shapes the kernels are not built for (head_dim other than 64/128, fp32, more than 8 query
/// heads per KV head) take the reference path on the same device.
/// </summary>
public sealed class CudaPagedAttention : IPagedAttention
{
    private readonly ConcurrentDictionary<(string, int, int, int), PagedAttentionKernels> _kernels = new();
    private readonly ReferenceAttention _fallback = new();

    public AttentionPlan Prepare(AttentionBatch batch, Device device) => new Plan(batch, device, _fallback);

    public static bool Supports(Tensor q, Tensor k) =>
        q.device_type == DeviceType.CUDA && q.dtype is ScalarType.BFloat16 or ScalarType.Float16
        && q.shape[2] is 64 or 128 && q.shape[1] % k.shape[1] == 0 && (q.shape[1] / k.shape[1]) is 1 or 2 or 4 or 8;

    public Tensor Forward(AttentionPlan plan, Tensor q, Tensor k, Tensor v, LayerKv kv, double scale)
    {
        var p = (Plan)plan;
        if (!Supports(q, k))
        {
            return _fallback.Forward(p.Fallback, q, k, v, kv, scale);
        }

        long heads = q.shape[1], kvHeads = k.shape[1], headDim = q.shape[2];
        var device = TorchCuda.Device(q.device);
        string dtype = TorchCuda.KernelDType(q.dtype);
        var kernels = _kernels.GetOrAdd((dtype, (int)headDim, (int)(heads / kvHeads), device.Ordinal),
            key => new PagedAttentionKernels(device, key.Item1, key.Item2, key.Item3));

        q = q.contiguous();
        k = k.contiguous();
        v = v.contiguous();
        var output = empty_like(q);
        var pointers = p.Pointers(kernels, (int)heads);
        kernels.Run(p.Layout, pointers,
            TorchCuda.Pointer(q, "q"), TorchCuda.Pointer(k, "k"), TorchCuda.Pointer(v, "v"),
            TorchCuda.Pointer(kv.Keys, "key pool"), TorchCuda.Pointer(kv.Values, "value pool"), TorchCuda.Pointer(output, "output"),
            (int)heads, (int)kvHeads, scale);
        return output;
    }

    private sealed class Plan : AttentionPlan
    {
        private readonly Tensor _ints;
        private readonly Tensor _slots;
        private Tensor? _workspace;

        private readonly ReferenceAttention _reference;
        private AttentionPlan? _fallback;

        public Plan(AttentionBatch batch, Device device, ReferenceAttention reference)
            : base(batch)
        {
            _reference = reference;
            Layout = new AttentionLayout(batch);
            using var ints = tensor(Layout.Ints.Length > 0 ? Layout.Ints : [0]);
            using var slots = tensor(Layout.Slots);
            _ints = ints.to(device).DetachFromDisposeScope();
            _slots = slots.to(device).DetachFromDisposeScope();
        }

        public AttentionLayout Layout { get; }

        /// <summary>The reference plan, made on first use by a shape the kernels do not cover.</summary>
        public AttentionPlan Fallback => _fallback ??= _reference.Prepare(Batch, _ints.device);

        /// <summary>Pointers for this step; the decode workspace is sized at the first layer and reused by the rest.</summary>
        public LayoutPointers Pointers(PagedAttentionKernels kernels, int heads)
        {
            var (acc, ml) = kernels.WorkspaceSize(Layout, heads);
            if (_workspace is null || _workspace.numel() < acc + ml)
            {
                _workspace?.Dispose();
                _workspace = empty(Math.Max(1, acc + ml), dtype: ScalarType.Float32, device: _ints.device).DetachFromDisposeScope();
            }

            IntPtr ws = TorchCuda.Pointer(_workspace, "workspace");
            return new LayoutPointers(TorchCuda.Pointer(_ints, "layout"), TorchCuda.Pointer(_slots, "slots"), ws, ws + (nint)(acc * sizeof(float)));
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _ints.Dispose();
                _slots.Dispose();
                _workspace?.Dispose();
                _fallback?.Dispose();
            }
        }
    }
}
