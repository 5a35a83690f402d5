using TaH.Engine.Config;
using TaH.Training.Model;

namespace TaH.Training;

/// <summary>
/// The demo model that ships with the project (models/tah-arith: multi-digit addition in a ChatML
/// exchange) and the shapes its recipe trains.
/// </summary>
public static class DemoModel
{
    public const string FolderName = "tah-arith";

    /// <summary>
    /// Where the demo checkpoint is: <c>models/tah-arith</c> next to the application (copied there by
    /// the build), else in the repository the application was built from; null when neither exists.
    /// </summary>
    public static string? DefaultDirectory
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "models", FolderName);
                if (File.Exists(Path.Combine(candidate, "config.json")))
                {
                    return candidate;
                }
            }

            return null;
        }
    }

    /// <summary>The reference model: a 4-layer Qwen3 (vocab size comes from the tokenizer).</summary>
    public static Qwen3Config Shape(int vocabSize = 0, int layers = 4, int hidden = 128, int intermediate = 384, int heads = 4, int kvHeads = 2) => new()
    {
        VocabSize = vocabSize,
        HiddenSize = hidden,
        IntermediateSize = intermediate,
        NumHiddenLayers = layers,
        NumAttentionHeads = heads,
        NumKeyValueHeads = kvHeads,
        HeadDim = hidden / heads,
        RmsNormEps = 1e-6,
        // Short sequences: a smaller base than Qwen3's 1e6 keeps every rotary frequency useful.
        RopeTheta = 10_000,
        MaxPositionEmbeddings = 256,
        TieWordEmbeddings = true,
        TorchDtype = "float32",
    };

    /// <summary>The TaH parts, the 1.7B recipe scaled down: all-linear LoRA, a decider over four hidden-state entries.</summary>
    public static TaHSettings Settings(Qwen3Config shape, int loraRank = 16, int topK = 100) => new()
    {
        Lora = new LoraConfig { Rank = loraRank, Alpha = 2 * loraRank, UseRsLora = false, TargetModules = LoraConfig.AllLinear },
        InputTopK = Math.Min(topK, shape.VocabSize),
        Decider = new DeciderConfig
        {
            TopK = Math.Min(topK, shape.VocabSize),
            HiddenStatesSize = shape.HiddenSize,
            HiddenStatesLayerNums = [.. Enumerable.Range(0, 4).Select(i => Math.Clamp(shape.NumHiddenLayers * (i + 1) / 4, 0, shape.NumHiddenLayers)).Distinct()],
            HiddenDims = [64, 64],
            ExpansionFactor = 2,
            NormalizeInput = false,
            Threshold = 0.5,
            MaxIter = 2,
            DType = "float32",
        },
    };
}
