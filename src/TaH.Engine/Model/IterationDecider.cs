using TaH.Kernels;
using TaH.Engine.Checkpoints;
using TaH.Engine.Config;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TaH.Engine.Model;

/// <summary>
/// The reference's <c>MLPIterDecider</c>: from the depth-d hidden states (selected entries of the
/// <c>hidden_states</c> tuple) and the top-k cumulative logits, the probability that a token should
/// take one more pass. Parameter names follow its state dict.
/// </summary>
public sealed class IterationDecider : IDisposable
{
    private const double LayerNormEps = 1e-5; // torch.nn.LayerNorm's default

    private readonly Dictionary<string, Tensor> _weights;
    private readonly Dictionary<string, LinearWeight> _linears;
    private readonly DeciderLayout _layout;
    private readonly CpuDeciderMlp? _cpu;

    private IterationDecider(DeciderLayout layout, Dictionary<string, Tensor> weights, Dictionary<string, LinearWeight> linears)
    {
        _layout = layout;
        _weights = weights;
        _linears = linears;
        // The kernel formats run the whole MLP on raw buffers; fp32 and the GPU keep torch's ops.
        if (linears.Values.All(l => l is KernelWeight))
        {
            _cpu = new CpuDeciderMlp(layout, name => (KernelWeight)_linears[name], name => _weights[name]);
        }
    }

    public DeciderConfig Config => _layout.Config;

    /// <summary>The threshold in force: the configured one, never the learned parameter.</summary>
    public double Threshold => Config.Threshold;

    /// <summary>
    /// Builds the decider from its state dict, checking every parameter's presence and shape.
    /// Entries that are constructor arguments (the learned <c>threshold</c>) are ignored, as the
    /// reference loader drops them. The linear layers' matrices take <see cref="ModelOptions.Decider"/>.
    /// </summary>
    public static IterationDecider Create(DeciderConfig config, IReadOnlyDictionary<string, Tensor> stateDict, string path, ModelOptions options)
    {
        var layout = new DeciderLayout(config);
        var weights = new Dictionary<string, Tensor>();
        try
        {
            foreach (var (name, shape, _) in layout.Parameters)
            {
                if (!stateDict.TryGetValue(name, out var tensor))
                {
                    throw new CheckpointException(path, $"decider parameter '{name}' is missing");
                }

                if (!tensor.shape.SequenceEqual(shape))
                {
                    throw new CheckpointException(path, $"decider parameter '{name}' has shape [{string.Join(", ", tensor.shape)}], expected [{string.Join(", ", shape)}] from the decider configuration");
                }

                weights[name] = tensor.to(options.DType, options.Device, copy: true).DetachFromDisposeScope();
            }
        }
        catch
        {
            foreach (var w in weights.Values)
            {
                w.Dispose();
            }

            throw;
        }

        // Matrices (the 2-D parameters) become linear weights; norms and biases stay tensors.
        var linears = new Dictionary<string, LinearWeight>();
        foreach (var (name, tensor) in weights.Where(w => w.Value.dim() == 2).ToArray())
        {
            linears[name] = LinearWeight.Create([tensor], options.Decider);
            if (linears[name].Dense is null)
            {
                tensor.Dispose();
            }

            weights.Remove(name);
        }

        return new IterationDecider(layout, weights, linears);
    }

    /// <summary>How its linear layers' matrices are held.</summary>
    public WeightFormat Weights => _linears.Values.First().Format;

    /// <summary>Whether the forward runs on the project's CPU kernels (their worker pool), not on torch's ops.</summary>
    public bool OnCpuKernels => _cpu is not null;

    /// <summary>Memory the decider's parameters hold.</summary>
    public long Bytes => _linears.Values.Sum(l => l.Bytes) + _weights.Values.Sum(t => t.numel() * t.ElementSize);

    /// <summary>
    /// One continue probability per row, from the selected hidden entries (each <c>[rows, hidden]</c>,
    /// in the order of <see cref="DeciderConfig.HiddenStatesLayerNums"/>; their concatenation is the
    /// decider's input) and the top-k of the cumulative logits, sorted descending <c>[rows, >= topk]</c>.
    /// </summary>
    public double[] ContinueProbabilities(IReadOnlyList<Tensor> hiddenEntries, Tensor topLogits)
    {
        if (_cpu is not null)
        {
            return _cpu.Run(hiddenEntries, topLogits);
        }

        using var scope = NewDisposeScope();
        var v = topLogits.narrow(1, 0, Config.TopK);
        var hidden = cat([.. hiddenEntries], 1);
        if (Config.NormalizeInput)
        {
            hidden = LayerNorm(hidden, DeciderLayout.LayerNormHiddenStates);
            v = v.softmax(-1);
        }

        var x = Linear(cat([hidden, Linear(v, DeciderLayout.LogitsProjection)], 1), DeciderLayout.CombinedProjection);
        x = Linear(x, DeciderLayout.InputProjection);
        for (int j = 0; j < _layout.BlockCount; j++)
        {
            var residual = _layout.HasDimChange(j) ? Linear(x, DeciderLayout.BlockDimChange(j)) : x;
            var inner = F.gelu(Linear(LayerNorm(x, DeciderLayout.BlockNorm(j)), DeciderLayout.BlockUp(j)));
            x = residual.add(Linear(inner, DeciderLayout.BlockDown(j)), PinnedScalars.One);
        }

        var logit = Linear(LayerNorm(x, DeciderLayout.OutputNorm), DeciderLayout.OutputLinear);
        return logit.squeeze(-1).sigmoid().to(ScalarType.Float64).cpu().data<double>().ToArray();
    }

    private Tensor Linear(Tensor x, string name) => _linears[$"{name}.weight"].Forward(x, _weights[$"{name}.bias"]);

    private Tensor LayerNorm(Tensor x, string name) =>
        F.layer_norm(x, [x.shape[^1]], _weights[$"{name}.weight"], _weights[$"{name}.bias"], LayerNormEps);

    public void Dispose()
    {
        foreach (var w in _weights.Values)
        {
            w.Dispose();
        }

        foreach (var l in _linears.Values)
        {
            l.Dispose();
        }
    }
}
