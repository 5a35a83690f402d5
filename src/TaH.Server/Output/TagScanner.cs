namespace TaH.Server.Output;

/// <summary>Helpers for parsers that look for fixed tags in streamed text.</summary>
internal static class TagScanner
{
    /// <summary>Length of the longest suffix of <paramref name="text"/> that is a proper prefix of <paramref name="tag"/>.</summary>
    public static int PartialTagSuffix(string text, string tag)
    {
        for (int n = Math.Min(tag.Length - 1, text.Length); n > 0; n--)
        {
            if (text.AsSpan(text.Length - n).SequenceEqual(tag.AsSpan(0, n)))
            {
                return n;
            }
        }

        return 0;
    }
}
