using System.CommandLine;
using System.Globalization;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.TaH;

namespace TaH.Server.Cli;

/// <summary>
/// <c>tah inspect</c>: runs token ids through one policy and writes what every position came to in
/// the golden format of the reference fixtures (prefill records, then greedy decoding).
/// </summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var ids = new Option<string>("--ids") { Description = "prompt token ids, comma separated", Required = true };
        var policy = CommonOptions.Policy();
        var threshold = CommonOptions.Threshold();
        var greedy = new Option<int>("--greedy") { Description = "greedy tokens to decode after the prompt", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out", "-o") { Description = "JSON file to write", Required = true };
        var weights = new WeightOptions();

        var command = new Command("inspect", "write per-position depths, continue probabilities and logits as JSON (the fixtures' golden format)")
        {
            model, ids, policy, threshold, greedy, output,
        };
        weights.AddTo(command);
        command.SetAction(result => CliAction.Run(() =>
        {
            var prompt = ParseIds(result.GetValue(ids)!);
            int steps = result.GetValue(greedy);
            if (steps < 0)
            {
                throw new ArgumentException($"--greedy must be 0 or more (got {steps})");
            }

            using var tah = CommonOptions.Load(result.GetValue(model)!, weights.Read(result, "cpu"));
            var chosen = CommonOptions.ReadPolicy(result, policy, threshold);
            var inspection = Inspection.Run(tah, prompt, chosen, steps);
            using (var stream = File.Create(result.GetValue(output)!))
            {
                inspection.WriteJson(stream, Path.GetFileName(tah.Directory.TrimEnd('/')));
            }

            Console.Error.WriteLine($"wrote {result.GetValue(output)}: {prompt.Count} prompt positions, {steps} greedy tokens, policy {chosen}");
            return 0;
        }));
        return command;
    }

    internal static List<int> ParseIds(string text)
    {
        var ids = new List<int>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            ids.Add(int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int id)
                ? id
                : throw new ArgumentException($"--ids: '{part}' is not a token id (expected comma-separated non-negative integers)"));
        }

        return ids.Count > 0 ? ids : throw new ArgumentException("--ids is empty");
    }
}
