using System.CommandLine;
using TaH.Checkpoints.Writing;
using TorchSharp;

namespace TaH.Server.Cli;

/// <summary><c>tah create-random</c>: a random-weight checkpoint in the released TaH layout, for benchmarks.</summary>
internal static class CreateRandomCommand
{
    public static Command Create()
    {
        // Spelled out rather than read from ModelShape.Known: building the command line must not
        // load the writers' assembly, which serving never needs (a test compares the two).
        var shape = new Option<string>("--shape")
        {
            Description = "qwen3-0.6b, qwen3-1.7b, tiny, tiny-qwen3-vocab",
            DefaultValueFactory = _ => "qwen3-0.6b",
        };
        var output = new Option<string>("--out", "-o") { Description = "directory to write", Required = true };
        var seed = new Option<long>("--seed") { DefaultValueFactory = _ => 0 };
        var dtype = new Option<string>("--dtype") { Description = "bf16 or fp32 on disk", DefaultValueFactory = _ => "bf16" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "copy tokenizer.json and tokenizer_config.json from this directory" };
        var command = new Command("create-random", "write a random-weight TaH checkpoint of a Qwen3 shape (for benchmarks and tests)")
        {
            shape, output, seed, dtype, tokenizer,
        };
        command.SetAction(result => CliAction.Run(() =>
        {
            var type = result.GetValue(dtype) switch
            {
                "bf16" => torch.ScalarType.BFloat16,
                "fp32" => torch.ScalarType.Float32,
                var other => throw new ArgumentException($"--dtype must be bf16 or fp32 (got '{other}')"),
            };
            var chosen = ModelShape.Parse(result.GetValue(shape)!);
            string outDir = result.GetValue(output)!;
            RandomCheckpoint.Write(outDir, chosen, result.GetValue(seed), type);
            if (result.GetValue(tokenizer) is { } from)
            {
                foreach (string file in new[] { "tokenizer.json", "tokenizer_config.json" })
                {
                    File.Copy(Path.Combine(from, file), Path.Combine(outDir, file), overwrite: true);
                }
            }
            Console.Error.WriteLine($"wrote a random {chosen.Name} checkpoint to {result.GetValue(output)}");
            return 0;
        }));
        return command;
    }
}
