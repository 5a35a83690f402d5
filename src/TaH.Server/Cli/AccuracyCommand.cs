using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.TaH;

namespace TaH.Server.Cli;

/// <summary>
/// <c>tah accuracy</c>: a weight format against fp32 on the same checkpoint, teacher-forced over
/// one prompt (random token ids, or --ids): top-1 agreement, logit differences, and the decider's
/// depth decisions.
/// </summary>
internal static class AccuracyCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var weights = new Option<string>("--weights") { Description = "the format to compare with fp32: bf16, q8_0 or q4_0", DefaultValueFactory = _ => "q8_0" };
        var deciderWeights = new Option<string?>("--decider-weights") { Description = "the compared model's decider format (default: --weights)" };
        var positions = new Option<int>("--positions") { Description = "random prompt length (teacher-forced positions)", DefaultValueFactory = _ => 512 };
        var ids = new Option<string?>("--ids") { Description = "the prompt's token ids instead, comma separated" };
        var policy = CommonOptions.Policy();
        var threshold = CommonOptions.Threshold();
        var share = new Option<double?>("--target-share") { Description = "set the decider's threshold so that this share of positions iterates in fp32 (for random-weight models)" };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var json = new Option<string?>("--json") { Description = "also write the figures as JSON" };
        var command = new Command("accuracy", "compare a weight format (q8_0, q4_0, bf16) with fp32 on one checkpoint, teacher-forced: top-1 agreement, logit differences, depth decisions")
        {
            model, weights, deciderWeights, positions, ids, policy, threshold, share, seed, json,
        };
        command.SetAction(result => CliAction.Run(() =>
        {
            if (result.GetValue(threshold) is not null && result.GetValue(share) is not null)
            {
                throw new ArgumentException("give --threshold or --target-share, not both");
            }

            string dir = result.GetValue(model)!;
            var options = ModelOptions.Parse("cpu", result.GetValue(weights)!, result.GetValue(deciderWeights));
            var format = options.Weights;
            if (format == WeightFormat.Fp32 && options.Decider == WeightFormat.Fp32)
            {
                throw new ArgumentException("--weights: compare bf16, q8_0 or q4_0 with fp32 (fp32 is the reference)");
            }

            using var reference = ModelLoader.Load(dir);
            var chosen = CommonOptions.ReadPolicy(result, policy, threshold);
            if (reference.Supports(chosen) is { } problem)
            {
                throw new ArgumentException(problem);
            }

            List<int> prompt;
            if (result.GetValue(ids) is { } text)
            {
                prompt = InspectCommand.ParseIds(text);
            }
            else
            {
                int n = result.GetValue(positions);
                if (n < 1)
                {
                    throw new ArgumentException($"--positions must be at least 1 (got {n})");
                }

                var random = new Random(result.GetValue(seed));
                prompt = [.. Enumerable.Range(0, n).Select(_ => random.Next(reference.Config.VocabSize))];
            }

            if (result.GetValue(share) is { } s)
            {
                if (chosen.Kind != PolicyKind.Decider || s is < 0 or > 1)
                {
                    throw new ArgumentException("--target-share is a share in [0, 1] for the decider policy");
                }

                chosen = IterationPolicy.Parse("decider", WeightAccuracy.ThresholdForShare(reference, prompt, s));
            }

            using var compared = CommonOptions.Load(dir, options);
            var r = WeightAccuracy.Compare(reference, compared, prompt, chosen);
            var inv = CultureInfo.InvariantCulture;
            Console.Out.WriteLine(string.Create(inv, $"{WeightFormats.Name(format, options.Decider)} vs fp32, {r.Positions} teacher-forced positions, policy {chosen}:"));
            Console.Out.WriteLine(string.Create(inv, $"  top-1 agreement        {r.Top1Agreement:P2} ({r.Top1Agreements}/{r.Positions})"));
            Console.Out.WriteLine(string.Create(inv, $"  max |logit difference| {r.MaxLogitDifference:G4} (mean {r.MeanLogitDifference:G3}; largest fp32 |logit| {r.MaxReferenceLogit:G4})"));
            if (r.Threshold is { } t)
            {
                Console.Out.WriteLine(string.Create(inv, $"  depth decisions        {r.DepthAgreement:P2} agree ({r.DepthAgreements}/{r.Positions}); threshold {t:G6}; iterated fp32 {r.ReferenceIterated}, {format.Name()} {r.ComparedIterated}"));
                Console.Out.WriteLine(string.Create(inv, $"  max |continue probability difference| {r.MaxProbabilityDifference:G4}; max |logit difference| where the depths agree {r.MaxLogitDifferenceSameDepth:G4}"));
            }

            if (result.GetValue(json) is { } path)
            {
                File.WriteAllText(path, JsonSerializer.Serialize(new { weights = format.Name(), decider_weights = options.Decider.Name(), policy = chosen.ToString(), result = r, top1_agreement = r.Top1Agreement, depth_agreement = r.DepthAgreement }, new JsonSerializerOptions { WriteIndented = true }));
            }

            return 0;
        }));
        return command;
    }
}
