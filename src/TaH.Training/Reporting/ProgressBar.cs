using System.Diagnostics;
using System.Globalization;

namespace TaH.Training.Reporting;

/// <summary>
/// A one-line progress bar on stderr: bar, step, loss, tokens/s and ETA, redrawn in place on a
/// terminal; on a redirected stream (a log file) one plain line every few percent instead.
/// </summary>
public sealed class ProgressBar(string name, int total, int start = 0)
{
    private const int Width = 28;

    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly bool _interactive = !Console.IsErrorRedirected;
    private int _lastLogged = -1;
    private string _line = "";

    /// <summary>Redraws the bar; loss and tokens/s are shown when given.</summary>
    public void Update(int done, double? loss = null, double? tokensPerSecond = null)
    {
        double fraction = total == 0 ? 1 : (double)done / total;
        double rate = (done - start) / Math.Max(1e-9, _clock.Elapsed.TotalSeconds);
        var eta = rate > 0 ? TimeSpan.FromSeconds((total - done) / rate) : TimeSpan.Zero;
        int filled = (int)Math.Round(fraction * Width);
        string bar = new string('#', filled) + new string('.', Width - filled);
        string lossText = loss is { } l ? string.Create(CultureInfo.InvariantCulture, $" loss {l:F4}") : "";
        string speedText = tokensPerSecond is { } s ? string.Create(CultureInfo.InvariantCulture, $" {s:N0} tok/s") : "";
        _line = $"{name} [{bar}] {done}/{total}{lossText}{speedText} ETA {Format(eta)}";
        if (_interactive)
        {
            Console.Error.Write($"\r{_line}\u001b[K");
        }
        else if (done == total || (int)(fraction * 50) != _lastLogged)
        {
            _lastLogged = (int)(fraction * 50);
            Console.Error.WriteLine(_line);
        }
    }

    /// <summary>A message above the bar (held-out loss and the like).</summary>
    public void Note(string message)
    {
        if (_interactive)
        {
            Console.Error.Write($"\r\u001b[K{name}: {message}\n{_line}");
        }
        else
        {
            Console.Error.WriteLine($"{name}: {message}");
        }
    }

    public void Done()
    {
        if (_interactive)
        {
            Console.Error.WriteLine();
        }

        Console.Error.WriteLine($"{name}: done in {Format(_clock.Elapsed)}");
    }

    private static string Format(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:D2}m" : t.TotalMinutes >= 1 ? $"{(int)t.TotalMinutes}m{t.Seconds:D2}s" : $"{t.Seconds}s";
}
