using System.Globalization;
using System.Text;
using TaH.Engine.Model;
using TaH.Engine.TaH;
using TaH.Engine.Tokenization;
using TaH.Training.Reporting;

namespace TaH.Training.Evaluation;

/// <summary>One point of the trade-off: a policy's exact-answer accuracy at the depth-2 share it reached.</summary>
public sealed record TradeoffPoint(string Kind, string Label, double? Setting, double Accuracy, int Correct, int Problems, double Share, int AnswerTokens, int IteratedTokens);

/// <summary>
/// The trade-off between the share of tokens that take the second pass and exact-answer accuracy
/// on held-out problems: per-request depth budgets at target shares, the decider at fixed
/// thresholds (never and always at the ends), and the Oracle. Every generated point is the engine
/// generating greedily as the server runs a chat request; the share is over the answer tokens
/// (the generated tokens: digits and the end token).
/// </summary>
public sealed record BudgetTradeoff(string Model, double TrainedThreshold, TradeoffPoint[] Budgets, TradeoffPoint[] Thresholds, TradeoffPoint Oracle)
{
    public static readonly double[] DefaultTargets = [0, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 1.0];

    public static readonly double[] DefaultThresholds = [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98];

    public static BudgetTradeoff Run(string modelDir, string? referenceDir, IReadOnlyList<string> jsonlLines, TextTokenizer tokenizer,
        IReadOnlyList<double> targets, IReadOnlyList<double> thresholds, TextWriter log)
    {
        var problems = PolicyEvaluation.Problems(jsonlLines);
        var budgets = new List<TradeoffPoint>();
        var fixedPoints = new List<TradeoffPoint>();
        double trained;
        using (var model = ModelLoader.Load(modelDir))
        {
            trained = model.Decider?.Threshold ?? throw new ArgumentException($"{modelDir} has no decider (iter_decider.bin): nothing to trade off");
            foreach (double target in targets)
            {
                var policy = IterationPolicy.Decider.WithBudget(DepthBudgetSettings.Create(target, null));
                budgets.Add(Point("budget", Percent(target), target, PolicyEvaluation.Generate(model, tokenizer, problems, policy)));
                log.WriteLine(Invariant($"target share {target:P0}: {budgets[^1].Correct}/{problems.Count} correct, share {budgets[^1].Share:P1}"));
            }

            fixedPoints.Add(Point("threshold", "never", 1, PolicyEvaluation.Generate(model, tokenizer, problems, IterationPolicy.Never)));
            foreach (double threshold in thresholds.Append(trained).Distinct().Order())
            {
                string label = threshold == trained ? Invariant($"{threshold:0.###} (trained)") : Invariant($"{threshold:0.###}");
                fixedPoints.Add(Point("threshold", label, threshold, PolicyEvaluation.Generate(model, tokenizer, problems, IterationPolicy.Parse("decider", threshold))));
                log.WriteLine(Invariant($"threshold {label}: {fixedPoints[^1].Correct}/{problems.Count} correct, share {fixedPoints[^1].Share:P1}"));
            }

            fixedPoints.Add(Point("threshold", "always", 0, PolicyEvaluation.Generate(model, tokenizer, problems, IterationPolicy.Always)));
        }

        var oracle = Point("oracle", "Oracle", null, PolicyEvaluation.Oracle(modelDir, referenceDir, problems, tokenizer));
        return new BudgetTradeoff(modelDir, trained, [.. budgets], [.. fixedPoints], oracle);
    }

    /// <summary>
    /// The fixed-threshold curve's accuracy at <paramref name="share"/>: linear between the two
    /// sweep points whose shares enclose it (the curve ordered by share); null outside the sweep.
    /// </summary>
    public double? ThresholdAccuracyAt(double share)
    {
        var curve = Thresholds.OrderBy(p => p.Share).ToArray();
        for (int i = 1; i < curve.Length; i++)
        {
            var (a, b) = (curve[i - 1], curve[i]);
            if (share >= a.Share && share <= b.Share)
            {
                return b.Share == a.Share ? Math.Max(a.Accuracy, b.Accuracy) : a.Accuracy + ((b.Accuracy - a.Accuracy) * (share - a.Share) / (b.Share - a.Share));
            }
        }

        return null;
    }

    public string Markdown()
    {
        var sb = new StringBuilder();
        sb.AppendLine("Per-request depth budget (`\"tah\": {\"target_share\": s}`), beside the fixed-threshold decider at the share each reached:");
        sb.AppendLine();
        sb.AppendLine("| target share | exact-answer accuracy | share reached | fixed threshold at that share | budget - threshold |");
        sb.AppendLine("|---|---|---|---|---|");
        foreach (var p in Budgets)
        {
            double? fixedAccuracy = ThresholdAccuracyAt(p.Share);
            sb.AppendLine(Invariant($"| {p.Label} | {p.Accuracy:P1} ({p.Correct}/{p.Problems}) | {p.Share:P1} | {(fixedAccuracy is { } f ? Invariant($"{f:P1}") : "-")} | {(fixedAccuracy is { } g ? Invariant($"{100 * (p.Accuracy - g):+0.0;-0.0;0.0} points") : "-")} |"));
        }

        sb.AppendLine();
        sb.AppendLine("| decider threshold | exact-answer accuracy | share reached |");
        sb.AppendLine("|---|---|---|");
        foreach (var p in Thresholds)
        {
            sb.AppendLine(Invariant($"| {p.Label} | {p.Accuracy:P1} ({p.Correct}/{p.Problems}) | {p.Share:P1} |"));
        }

        sb.AppendLine(Invariant($"| Oracle (labels given) | {Oracle.Accuracy:P1} ({Oracle.Correct}/{Oracle.Problems}) | {Oracle.Share:P1} |"));
        return sb.ToString();
    }

    /// <summary>Accuracy against share: the budget's points, the threshold sweep, the Oracle.</summary>
    public void Plot(string path)
    {
        var budget = Budgets.OrderBy(p => p.Share).Select(p => (p.Share * 100, p.Accuracy * 100)).ToList();
        var sweep = Thresholds.OrderBy(p => p.Share).Select(p => (p.Share * 100, p.Accuracy * 100)).ToList();
        Plots.LineChart(
            "exact-answer accuracy (%) against tokens at depth 2 (%)",
            "answer tokens that took the second pass (%)",
            [
                new Series("depth budget (target share)", (31, 119, 180), budget),
                new Series("fixed threshold", (255, 127, 14), sweep),
                new Series("Oracle", (44, 160, 44), [(Oracle.Share * 100, Oracle.Accuracy * 100)]),
            ],
            logY: false,
            path,
            markers: true);
    }

    private static TradeoffPoint Point(string kind, string label, double? setting, PolicyResult r) =>
        new(kind, label, setting, r.Accuracy, r.Correct, r.Problems, r.IterateShare, r.AnswerTokens, r.IteratedTokens);

    private static string Percent(double v) => Invariant($"{100 * v:0.##}%");

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
