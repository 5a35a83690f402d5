using System.Text.Encodings.Web;
using System.Text.Json;
using TaH.Engine.Tokenization;
using TaH.Training.Data;
using TaH.Training.Evaluation;

namespace TaH.Training.Tests;

/// <summary>The trade-off evaluation on the committed demo model and a few held-out problems.</summary>
public class BudgetTradeoffTests
{
    private static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    [Fact]
    public void ItsEndsAreNeverAndEveryTokenAndItWritesTheTableAndThePlot()
    {
        string dir = DemoModel.DefaultDirectory ?? throw new InvalidOperationException("models/tah-arith is missing");
        var test = ArithmeticTask.Splits(10, 10, 30, 1, 4, 7).Test;
        var lines = test.Select(p => p.ToChat().ToJsonString(Json)).ToList();
        var report = BudgetTradeoff.Run(dir, null, lines, TextTokenizer.Load(dir), [0, 1], [0.5], TextWriter.Null);

        var never = report.Thresholds.Single(p => p.Label == "never");
        var zero = report.Budgets.Single(p => p.Setting == 0);
        var all = report.Budgets.Single(p => p.Setting == 1);
        Assert.Equal((never.Correct, never.IteratedTokens), (zero.Correct, zero.IteratedTokens)); // target 0 runs as never
        Assert.Equal(0, zero.Share);
        Assert.Equal(all.AnswerTokens, all.IteratedTokens); // target 1: every generated token
        Assert.Equal(30, report.Oracle.Problems);
        Assert.Contains(report.Thresholds, p => p.Label.EndsWith("(trained)", StringComparison.Ordinal));

        // The fixed-threshold accuracy at a share lies on the segment between the sweep points around it.
        var curve = report.Thresholds.OrderBy(p => p.Share).ToArray();
        var (a, b) = (curve[^2], curve[^1]);
        double mid = (a.Share + b.Share) / 2;
        Assert.Equal((a.Accuracy + b.Accuracy) / 2, report.ThresholdAccuracyAt(mid)!.Value, 12);
        Assert.Null(report.ThresholdAccuracyAt(1.5));

        var png = Path.Combine(Path.GetTempPath(), $"tradeoff-{Guid.NewGuid():N}.png");
        try
        {
            report.Plot(png);
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(png)[..4]);
        }
        finally
        {
            File.Delete(png);
        }

        Assert.Contains("| 100% |", report.Markdown(), StringComparison.Ordinal);
    }
}
