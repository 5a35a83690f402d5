namespace TaH.Server.Output;

/// <summary>
/// Finds stop strings in streamed text. Text that could still be the start of a stop string is
/// held back, so a stop string split across tokens is never sent in part; on a match the text
/// before it is released and nothing after.
/// </summary>
public sealed class StopStringMatcher
{
    private readonly string[] _stops;
    private string _pending = string.Empty;

    public StopStringMatcher(IReadOnlyList<string> stops)
    {
        if (stops.Any(string.IsNullOrEmpty))
        {
            throw new ArgumentException("stop strings must not be empty", nameof(stops));
        }

        _stops = [.. stops];
    }

    public bool Matched { get; private set; }

    /// <summary>Adds text; returns what is safe to send now.</summary>
    public string Push(string text)
    {
        if (Matched)
        {
            return string.Empty;
        }

        _pending += text;
        int first = -1;
        foreach (var stop in _stops)
        {
            int at = _pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
            {
                first = at;
            }
        }

        if (first >= 0)
        {
            Matched = true;
            var before = _pending[..first];
            _pending = string.Empty;
            return before;
        }

        int hold = HeldFrom(_pending);
        var release = _pending[..hold];
        _pending = _pending[hold..];
        return release;
    }

    /// <summary>The end of the output: what was held back can no longer become a stop string.</summary>
    public string Flush()
    {
        var rest = Matched ? string.Empty : _pending;
        _pending = string.Empty;
        return rest;
    }

    // The first position from which the rest of the text is a prefix of some stop string.
    private int HeldFrom(string text)
    {
        for (int i = Math.Max(0, text.Length - (_stops.Max(s => s.Length) - 1)); i < text.Length; i++)
        {
            var tail = text.AsSpan(i);
            foreach (var stop in _stops)
            {
                if (stop.AsSpan().StartsWith(tail, StringComparison.Ordinal))
                {
                    return i;
                }
            }
        }

        return text.Length;
    }
}
