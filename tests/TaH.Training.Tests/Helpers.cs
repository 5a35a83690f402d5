using TaH.Engine.Config;
using TaH.Training.Data;
using TaH.Training.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Training.Tests;

/// <summary>Paths in the repository and small models and datasets the tests build.</summary>
internal static class Helpers
{
    public static string Root { get; } = FindRoot();

    public static string Fixture(string relative) => Path.Combine(Root, "tests", "fixtures", relative);

    /// <summary>A tiny Qwen3 over the demo tokenizer's vocabulary.</summary>
    public static Qwen3Config TinyShape(int vocab) =>
        DemoModel.Shape(vocab, layers: 2, hidden: 32, intermediate: 64, heads: 4, kvHeads: 2) with { EosTokenIds = [vocab - 1] };

    /// <summary>A tiny TaH model whose LoRA B is non-zero, so depth 2 differs from depth 1.</summary>
    public static TrainableTaH TinyTaH(int vocab, long seed = 3)
    {
        var plain = TaHCheckpoint.NewBase(TinyShape(vocab), seed);
        var settings = DemoModel.Settings(plain.Config, loraRank: 4, topK: 16) with { LoraDropout = 0.1 };
        settings = settings with { Decider = settings.Decider with { HiddenDims = [16, 24] } };
        var model = TaHCheckpoint.WithNewTaH(plain, settings, seed + 1);
        using var generator = new Generator((ulong)seed + 2);
        using (no_grad())
        {
            foreach (var (name, p) in model.Lora.Where(kv => kv.Key.Contains("lora_B", StringComparison.Ordinal)))
            {
                p.copy_(normal(0, 0.2, p.shape, generator: generator));
            }
        }

        return model;
    }

    /// <summary>The demo tokenizer, written once per test run.</summary>
    public static string TokenizerDirectory => LazyTokenizer.Value;

    private static readonly Lazy<string> LazyTokenizer = new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), "tah-train-tests-tokenizer-" + Environment.ProcessId);
        DemoTokenizer.Write(dir);
        return dir;
    });

    public static List<Example> Problems(Engine.Tokenization.TextTokenizer tokenizer, int count, int seed) =>
        [.. ArithmeticTask.Generate(count, seed, 1, 3).Select(p => Example.FromChat(p.ToChat()["messages"]!.AsArray(), tokenizer, "test"))];

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TaH.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("cannot find the repository root (TaH.sln) above " + AppContext.BaseDirectory);
    }
}

/// <summary>A temporary directory removed at dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "tah-train-test-" + Guid.NewGuid().ToString("N")[..12]);

    public TempDirectory() => Directory.CreateDirectory(Path);

    public string Sub(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
