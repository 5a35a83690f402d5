using System.Globalization;
using TaH.Training.Evaluation;
using TaH.Training.Training;

namespace TaH.Training.Reporting;

/// <summary>A named line of a chart.</summary>
public sealed record Series(string Name, (byte R, byte G, byte B) Color, IReadOnlyList<(double X, double Y)> Points);

/// <summary>The charts written next to a checkpoint: loss curves, and the decider's precision/recall per threshold.</summary>
public static class Plots
{
    private static readonly (byte, byte, byte) Blue = (31, 119, 180);
    private static readonly (byte, byte, byte) Orange = (255, 127, 14);
    private static readonly (byte, byte, byte) Green = (44, 160, 44);
    private static readonly (byte, byte, byte) Grey = (150, 150, 150);

    public static void LossCurves(TrainingLog log, string title, string path)
    {
        // The per-step loss is noisy: draw its running mean over a window of ~1% of the run.
        int window = Math.Max(1, log.Train.Count / 100);
        var smoothed = new List<(double, double)>();
        double sum = 0;
        for (int i = 0; i < log.Train.Count; i++)
        {
            sum += log.Train[i].Loss;
            if (i >= window)
            {
                sum -= log.Train[i - window].Loss;
            }

            smoothed.Add((log.Train[i].Step, sum / Math.Min(i + 1, window)));
        }

        var series = new List<Series> { new("train", Blue, smoothed) };
        if (log.HeldOut.Count > 0)
        {
            series.Add(new Series("held-out", Orange, [.. log.HeldOut.Select(p => ((double)p.Step, p.Loss))]));
        }

        LineChart(title, "step", series, logY: true, path);
    }

    public static void DeciderCurves(ThresholdSweep sweep, string path)
    {
        var best = sweep.Best;
        LineChart(
            string.Create(CultureInfo.InvariantCulture, $"decider on held-out: threshold {best.Threshold:0.00} f1 {best.F1:0.00}"),
            "threshold",
            [
                new("precision", Blue, [.. sweep.Points.Select(p => (p.Threshold, p.Precision))]),
                new("recall", Orange, [.. sweep.Points.Select(p => (p.Threshold, p.Recall))]),
                new("share iterated", Green, [.. sweep.Points.Select(p => (p.Threshold, p.IterateShare))]),
            ],
            logY: false,
            path,
            markX: best.Threshold);
    }

    /// <summary>
    /// A line chart with axes, end labels on both axes, a legend and a title; <paramref name="markers"/>
    /// draws each point and lets a linear y axis start at the data instead of 0.
    /// </summary>
    public static void LineChart(string title, string xLabel, IReadOnlyList<Series> series, bool logY, string path, double? markX = null, bool markers = false)
    {
        const int Width = 800, Height = 500, Left = 90, Right = 20, Top = 50, Bottom = 60;
        var canvas = new Canvas(Width, Height);
        var all = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.Y) && (!logY || p.Y > 0)).ToList();
        if (all.Count == 0)
        {
            canvas.Text(Left, Height / 2, "no data", Grey);
            canvas.Save(path);
            return;
        }

        double Y(double v) => logY ? Math.Log10(v) : v;
        double x0 = all.Min(p => p.X), x1 = all.Max(p => p.X);
        double y0 = logY || markers ? all.Min(p => Y(p.Y)) : Math.Min(0, all.Min(p => p.Y)), y1 = all.Max(p => Y(p.Y));
        if (x1 <= x0)
        {
            x1 = x0 + 1;
        }

        if (y1 <= y0)
        {
            y1 = y0 + 1;
        }

        double Px(double x) => Left + ((x - x0) / (x1 - x0) * (Width - Left - Right));
        double Py(double y) => Height - Bottom - ((Y(y) - y0) / (y1 - y0) * (Height - Top - Bottom));

        canvas.Text(Left, 15, title, (0, 0, 0));
        canvas.Line(Left, Top, Left, Height - Bottom, (0, 0, 0));
        canvas.Line(Left, Height - Bottom, Width - Right, Height - Bottom, (0, 0, 0));
        string Number(double v) => v.ToString(Math.Abs(v) >= 100 ? "0" : "0.###", CultureInfo.InvariantCulture);
        double yLow = logY ? Math.Pow(10, y0) : y0, yHigh = logY ? Math.Pow(10, y1) : y1;
        canvas.Text(5, Height - Bottom - 7, Number(yLow), (0, 0, 0));
        canvas.Text(5, Top - 7, Number(yHigh), (0, 0, 0));
        if (logY)
        {
            canvas.Text(5, Top + 15, "(log)", Grey);
        }

        canvas.Text(Left - 5, Height - Bottom + 10, Number(x0), (0, 0, 0));
        canvas.Text(Width - Right - Canvas.TextWidth(Number(x1)), Height - Bottom + 10, Number(x1), (0, 0, 0));
        canvas.Text((Width - Canvas.TextWidth(xLabel)) / 2, Height - Bottom + 30, xLabel, (0, 0, 0));
        if (markX is { } mark)
        {
            canvas.Line(Px(mark), Top, Px(mark), Height - Bottom, Grey);
        }

        int legendY = Top;
        foreach (var s in series)
        {
            var points = s.Points.Where(p => double.IsFinite(p.Y) && (!logY || p.Y > 0)).ToList();
            for (int i = 1; i < points.Count; i++)
            {
                canvas.Line(Px(points[i - 1].X), Py(points[i - 1].Y), Px(points[i].X), Py(points[i].Y), s.Color, 2);
            }

            foreach (var point in points.Count == 1 || markers ? points : [])
            {
                canvas.Fill((int)Px(point.X) - 2, (int)Py(point.Y) - 2, 5, 5, s.Color);
            }

            int legendX = Width - Right - Canvas.TextWidth(s.Name) - 40;
            canvas.Fill(legendX, legendY + 5, 30, 4, s.Color);
            canvas.Text(legendX + 36, legendY, s.Name, s.Color);
            legendY += 22;
        }

        canvas.Save(path);
    }
}
