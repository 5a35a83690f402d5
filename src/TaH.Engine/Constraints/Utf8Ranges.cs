namespace TaH.Engine.Constraints;

/// <summary>
/// Sets of Unicode scalar values (code point ranges, surrogates never included) and their UTF-8
/// encodings as byte patterns: a range of code points becomes a few sequences of byte ranges.
/// </summary>
internal static class Utf8Ranges
{
    public const int MaxScalar = 0x10FFFF;

    /// <summary>Sorted, merged, without surrogates.</summary>
    public static List<(int Lo, int Hi)> Normalize(IEnumerable<(int Lo, int Hi)> ranges)
    {
        var sorted = ranges.Where(r => r.Lo <= r.Hi).OrderBy(r => r.Lo).ToList();
        var merged = new List<(int Lo, int Hi)>();
        foreach (var (lo, hi) in sorted)
        {
            if (merged.Count > 0 && lo <= merged[^1].Hi + 1)
            {
                merged[^1] = (merged[^1].Lo, Math.Max(merged[^1].Hi, hi));
            }
            else
            {
                merged.Add((lo, hi));
            }
        }

        var result = new List<(int Lo, int Hi)>();
        foreach (var (lo, hi) in merged)
        {
            if (hi < 0xD800 || lo > 0xDFFF)
            {
                result.Add((lo, hi));
                continue;
            }

            if (lo < 0xD800)
            {
                result.Add((lo, 0xD7FF));
            }

            if (hi > 0xDFFF)
            {
                result.Add((0xE000, hi));
            }
        }

        return result;
    }

    public static List<(int Lo, int Hi)> Complement(IEnumerable<(int Lo, int Hi)> ranges)
    {
        var result = new List<(int Lo, int Hi)>();
        int next = 0;
        foreach (var (lo, hi) in Normalize(ranges))
        {
            if (lo > next)
            {
                result.Add((next, lo - 1));
            }

            next = hi + 1;
        }

        if (next <= MaxScalar)
        {
            result.Add((next, MaxScalar));
        }

        return Normalize(result);
    }

    /// <summary>A pattern reading exactly one character of the set, in UTF-8.</summary>
    public static Pattern Pattern(IEnumerable<(int Lo, int Hi)> ranges)
    {
        var alternatives = new List<Pattern>();
        foreach (var (lo, hi) in Normalize(ranges))
        {
            // Split where the encoded length changes.
            int[] limits = [0x7F, 0x7FF, 0xFFFF, MaxScalar];
            int from = lo;
            foreach (int limit in limits)
            {
                if (from > hi)
                {
                    break;
                }

                if (from <= limit)
                {
                    Split(from, Math.Min(hi, limit), alternatives);
                    from = limit + 1;
                }
            }
        }

        return Constraints.Pattern.Alt([.. alternatives]);
    }

    // Splits [lo, hi] (same encoded length) until each piece is a product of byte ranges.
    private static void Split(int lo, int hi, List<Pattern> into)
    {
        int n = Length(lo);
        for (int i = 1; i < n; i++)
        {
            int m = (1 << (6 * i)) - 1;
            if ((lo & ~m) != (hi & ~m))
            {
                if ((lo & m) != 0)
                {
                    Split(lo, lo | m, into);
                    Split((lo | m) + 1, hi, into);
                    return;
                }

                if ((hi & m) != m)
                {
                    Split(lo, (hi & ~m) - 1, into);
                    Split(hi & ~m, hi, into);
                    return;
                }
            }
        }

        var a = Encode(lo);
        var b = Encode(hi);
        var parts = new Pattern[a.Length];
        for (int i = 0; i < a.Length; i++)
        {
            parts[i] = Constraints.Pattern.Range(a[i], b[i]);
        }

        into.Add(Constraints.Pattern.Seq(parts));
    }

    private static int Length(int cp) => cp <= 0x7F ? 1 : cp <= 0x7FF ? 2 : cp <= 0xFFFF ? 3 : 4;

    private static byte[] Encode(int cp) => System.Text.Encoding.UTF8.GetBytes(char.ConvertFromUtf32(cp));
}
