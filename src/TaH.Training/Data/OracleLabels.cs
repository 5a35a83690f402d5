using System.Text.Json.Nodes;
using TaH.Training.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Training.Data;

/// <summary>
/// The oracle labels of stage 0: a frozen reference model reads each sequence once; a supervised
/// position is hard when the reference's top-1 next-token prediction is not the actual next token.
/// Stored as JSONL, one sequence a line: tokens, supervised (0/1) and iter_labels (the reference's
/// iter_count_labels: 2 = hard, go to depth 2; 1 = easy).
/// </summary>
public static class OracleLabels
{
    public static List<Example> Label(TrainableTaH reference, IReadOnlyList<Example> examples, int padId, int batchSize, Action<int>? progress = null)
    {
        var labelled = new List<Example>(examples.Count);
        reference.IsTraining = false;
        using var _ = no_grad();
        foreach (var chunk in examples.Chunk(batchSize))
        {
            using var scope = NewDisposeScope();
            using var batch = Batch.Make(chunk, padId);
            var predicted = reference.Depth1(batch.Ids, keepForDeeper: false).Logits.argmax(-1);
            var wrong = predicted.ne(batch.Targets).logical_and(batch.Targets.ne(Batch.IgnoreIndex));
            bool[] flat = wrong.data<bool>().ToArray();
            long t = batch.Ids.shape[1];
            for (int i = 0; i < chunk.Length; i++)
            {
                var e = chunk[i];
                labelled.Add(e with { Hard = [.. flat.Skip((int)(i * t)).Take(e.Tokens.Length)] });
            }

            progress?.Invoke(chunk.Length);
        }

        return labelled;
    }

    public static void Write(string path, IEnumerable<Example> examples)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllLines(path, examples.Select(e => new JsonObject
        {
            ["tokens"] = new JsonArray([.. e.Tokens.Select(t => (JsonNode)t)]),
            ["supervised"] = new JsonArray([.. e.Supervised.Select(s => (JsonNode)(s ? 1 : 0))]),
            ["iter_labels"] = new JsonArray([.. e.Hard!.Select(h => (JsonNode)(h ? 2 : 1))]),
        }.ToJsonString()));
    }

    public static List<Example> Read(string path)
    {
        var examples = new List<Example>();
        foreach (string line in File.ReadLines(path).Where(l => !string.IsNullOrWhiteSpace(l)))
        {
            var node = JsonNode.Parse(line)!;
            int[] Ints(string key) => [.. node[key]!.AsArray().Select(n => n!.GetValue<int>())];
            int[] tokens = Ints("tokens");
            examples.Add(new Example(tokens, [.. Ints("supervised").Select(s => s == 1)], [.. Ints("iter_labels").Select(l => l >= 2)]));
        }

        return examples;
    }
}
