namespace TaH.Engine.Config;

/// <summary>One entry of the decider's state dict: its name, shape and whether it belongs to a LayerNorm.</summary>
public sealed record DeciderParameter(string Name, long[] Shape, bool IsNorm)
{
    public bool IsBias => Name.EndsWith(".bias", StringComparison.Ordinal);
}

/// <summary>
/// The state dict of the reference's <c>MLPIterDecider</c> as its constructor arguments shape it:
/// module names, parameter shapes and the backbone's block widths. The engine's loader, the
/// trainer and the random-checkpoint writer all read the decider through this one description.
/// </summary>
public sealed class DeciderLayout
{
    public const string LayerNormHiddenStates = "layer_norm_hidden_states";
    public const string LogitsProjection = "logits_projection";
    public const string CombinedProjection = "combined_projection";
    public const string InputProjection = "backbone.input_projection";
    public const string OutputNorm = "backbone.output_layer.0";
    public const string OutputLinear = "backbone.output_layer.1";

    public DeciderLayout(DeciderConfig config)
    {
        Config = config;
        BlockDims = [.. config.HiddenDims, config.HiddenDims[^1]];
        int h = config.HiddenStatesSize;
        long features = (long)h * Math.Max(1, config.HiddenStatesLayerNums.Length);
        var parameters = new List<DeciderParameter>();
        void Linear(string name, long inSize, long outSize)
        {
            parameters.Add(new($"{name}.weight", [outSize, inSize], false));
            parameters.Add(new($"{name}.bias", [outSize], false));
        }

        void Norm(string name, long size)
        {
            parameters.Add(new($"{name}.weight", [size], true));
            parameters.Add(new($"{name}.bias", [size], true));
        }

        // In the reference's module order (training creates, saves and resumes them in this order).
        if (config.NormalizeInput)
        {
            Norm(LayerNormHiddenStates, features);
        }

        Linear(LogitsProjection, config.TopK, h);
        Linear(CombinedProjection, features + h, BlockDims[0]);
        Linear(InputProjection, BlockDims[0], BlockDims[0]);
        for (int j = 0; j < BlockCount; j++)
        {
            long din = BlockDims[j], dout = BlockDims[j + 1], wide = din * config.ExpansionFactor;
            Norm(BlockNorm(j), din);
            Linear(BlockUp(j), din, wide);
            Linear(BlockDown(j), wide, dout);
            if (HasDimChange(j))
            {
                Linear(BlockDimChange(j), din, dout);
            }
        }

        Norm(OutputNorm, BlockDims[^1]);
        Linear(OutputLinear, BlockDims[^1], 1);
        Parameters = parameters;
    }

    public DeciderConfig Config { get; }

    /// <summary>Every parameter, in module order. The learned <c>threshold</c> is not one: it is a constructor argument.</summary>
    public IReadOnlyList<DeciderParameter> Parameters { get; }

    /// <summary>Widths into and out of the backbone's residual blocks: hidden_dims, then its last again.</summary>
    public IReadOnlyList<int> BlockDims { get; }

    public int BlockCount => BlockDims.Count - 1;

    /// <summary>Whether block <paramref name="j"/> changes width, so its residual goes through a projection.</summary>
    public bool HasDimChange(int j) => BlockDims[j] != BlockDims[j + 1];

    public static string BlockNorm(int j) => $"backbone.blocks.{j}.layer_norm";

    /// <summary>The block's widening linear layer (mlp.0; GELU and dropout follow).</summary>
    public static string BlockUp(int j) => $"backbone.blocks.{j}.mlp.0";

    /// <summary>The block's narrowing linear layer (mlp.3).</summary>
    public static string BlockDown(int j) => $"backbone.blocks.{j}.mlp.3";

    public static string BlockDimChange(int j) => $"backbone.blocks.{j}.dim_change";
}
