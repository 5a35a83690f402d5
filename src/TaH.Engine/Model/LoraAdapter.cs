using System.Text.RegularExpressions;
using TaH.Engine.Checkpoints;
using TaH.Engine.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Engine.Model;

/// <summary>
/// A PEFT LoRA adapter as saved under <c>lora/</c>: A <c>[r, in]</c> and B <c>[out, r]</c> per
/// targeted projection, read as fp32 until the loader fuses them into the model.
/// </summary>
internal sealed partial class LoraAdapter : IDisposable
{
    private readonly Dictionary<(int Layer, string Module), (Tensor A, Tensor B)> _pairs;

    private LoraAdapter(LoraConfig config, Dictionary<(int, string), (Tensor, Tensor)> pairs)
    {
        Config = config;
        _pairs = pairs;
    }

    public LoraConfig Config { get; }

    public double Scaling => Config.Scaling;

    public (Tensor A, Tensor B)? Find(int layer, string module) =>
        _pairs.TryGetValue((layer, module), out var pair) ? pair : null;

    /// <summary>Loads <c>DIR/adapter_config.json</c> and <c>DIR/adapter_model.safetensors</c>; null when DIR is absent.</summary>
    public static LoraAdapter? LoadIfPresent(string directory, Qwen3Config model)
    {
        if (!Directory.Exists(directory))
        {
            return null;
        }

        var config = LoraConfig.Load(Path.Combine(directory, "adapter_config.json"));
        string file = Path.Combine(directory, "adapter_model.safetensors");
        if (!File.Exists(file))
        {
            throw new CheckpointException(
                File.Exists(Path.Combine(directory, "adapter_model.bin")) ? Path.Combine(directory, "adapter_model.bin") : file,
                File.Exists(Path.Combine(directory, "adapter_model.bin"))
                    ? "pickled adapters are not supported; save the adapter as safetensors"
                    : "adapter weights not found");
        }

        foreach (string target in config.TargetModules)
        {
            if (!LoraConfig.AllLinear.Contains(target))
            {
                throw new CheckpointException(Path.Combine(directory, "adapter_config.json"), $"LoRA targets module '{target}', which Qwen3 layers do not have (they have {string.Join(", ", LoraConfig.AllLinear)})");
            }
        }

        using var weights = SafeTensorsCheckpoint.OpenFile(file);
        var halves = new Dictionary<(int, string), (Tensor? A, Tensor? B)>();
        try
        {
            foreach (string name in weights.Names)
            {
                var match = LoraName().Match(name);
                if (!match.Success)
                {
                    throw new CheckpointException(file, $"tensor '{name}' is not a LoRA weight of a Qwen3 projection (expected base_model.model.model.layers.N.(self_attn|mlp).MODULE.lora_A|lora_B.weight)");
                }

                int layer = int.Parse(match.Groups["layer"].Value, System.Globalization.CultureInfo.InvariantCulture);
                string module = match.Groups["module"].Value;
                string block = match.Groups["block"].Value;
                bool known = block == "self_attn" ? module is "q_proj" or "k_proj" or "v_proj" or "o_proj"
                    : module is "gate_proj" or "up_proj" or "down_proj";
                if (!known || layer >= model.NumHiddenLayers)
                {
                    throw new CheckpointException(file, $"LoRA weights for module '{block}.{module}' of layer {layer}, which the model does not have ({model.NumHiddenLayers} layers)");
                }

                var tensor = weights.Load(name, ScalarType.Float32);
                var current = halves.GetValueOrDefault((layer, module));
                halves[(layer, module)] = match.Groups["half"].Value == "A" ? (tensor, current.B) : (current.A, tensor);
            }

            var pairs = new Dictionary<(int, string), (Tensor, Tensor)>();
            foreach (var ((layer, module), (a, b)) in halves)
            {
                if (a is null || b is null)
                {
                    throw new CheckpointException(file, $"LoRA for layer {layer} {module} has lora_{(a is null ? "A" : "B")} missing");
                }

                var (outSize, inSize) = ProjectionShape(model, module);
                if (a.shape.Length != 2 || b.shape.Length != 2 || a.shape[1] != inSize || b.shape[0] != outSize || a.shape[0] != b.shape[1])
                {
                    throw new CheckpointException(file, $"LoRA for layer {layer} {module} has A [{string.Join(", ", a.shape)}] and B [{string.Join(", ", b.shape)}]; the projection is [{outSize}, {inSize}]");
                }

                pairs[(layer, module)] = (a, b);
            }

            halves.Clear();
            return new LoraAdapter(config, pairs);
        }
        finally
        {
            foreach (var (a, b) in halves.Values)
            {
                a?.Dispose();
                b?.Dispose();
            }
        }
    }

    private static (long Out, long In) ProjectionShape(Qwen3Config c, string module)
    {
        long q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        return module switch
        {
            "q_proj" => (q, c.HiddenSize),
            "k_proj" or "v_proj" => (kv, c.HiddenSize),
            "o_proj" => (c.HiddenSize, q),
            "gate_proj" or "up_proj" => (c.IntermediateSize, c.HiddenSize),
            _ => (c.HiddenSize, c.IntermediateSize),
        };
    }

    [GeneratedRegex(@"^base_model\.model\.model\.layers\.(?<layer>\d+)\.(?<block>self_attn|mlp)\.(?<module>\w+)\.lora_(?<half>[AB])(\.default)?\.weight$")]
    private static partial Regex LoraName();

    public void Dispose()
    {
        foreach (var (a, b) in _pairs.Values)
        {
            a.Dispose();
            b.Dispose();
        }
    }
}
