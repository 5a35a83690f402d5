using System.Globalization;
using System.Text;

namespace TaH.Engine.Tokenization;

/// <summary>
/// Unicode NFC normalization (UAX #15) in managed code. The project runs with invariant
/// globalization, where <see cref="string.Normalize()"/> does nothing, but Qwen's tokenizer
/// normalizes its input to NFC before splitting it.
/// </summary>
internal static class UnicodeNfc
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Lazy<Tables> Data = new(Tables.Parse);

    public static string Normalize(string text)
    {
        // Every character below U+0300 is a starter that NFC leaves as it is.
        var i = 0;
        while (i < text.Length && text[i] < 0x300)
        {
            i++;
        }
        if (i == text.Length)
        {
            return text;
        }

        var tables = Data.Value;
        var buffer = new List<int>(text.Length + 8);
        for (var k = 0; k < text.Length; k++)
        {
            int cp = text[k];
            if (char.IsHighSurrogate(text[k]) && k + 1 < text.Length && char.IsLowSurrogate(text[k + 1]))
            {
                cp = char.ConvertToUtf32(text[k], text[k + 1]);
                k++;
            }
            Decompose(cp, buffer, tables);
        }

        CanonicalOrder(buffer, tables);
        Compose(buffer, tables);

        var sb = new StringBuilder(buffer.Count);
        foreach (var cp in buffer)
        {
            if (cp is >= 0xD800 and <= 0xDFFF)
            {
                sb.Append((char)cp); // a lone surrogate passes through, as in JavaScript
            }
            else
            {
                sb.Append(char.ConvertFromUtf32(cp));
            }
        }
        return sb.ToString();
    }

    private static void Decompose(int cp, List<int> output, Tables tables)
    {
        var s = cp - SBase;
        if (s is >= 0 and < SCount)
        {
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0)
            {
                output.Add(TBase + s % TCount);
            }
            return;
        }
        if (tables.Decompositions.TryGetValue(cp, out var parts))
        {
            output.AddRange(parts);
        }
        else
        {
            output.Add(cp);
        }
    }

    private static void CanonicalOrder(List<int> buffer, Tables tables)
    {
        // Stable insertion sort of each run of non-starters by combining class.
        for (var i = 1; i < buffer.Count; i++)
        {
            var cc = tables.Class(buffer[i]);
            if (cc == 0)
            {
                continue;
            }
            var j = i;
            while (j > 0 && tables.Class(buffer[j - 1]) > cc)
            {
                (buffer[j - 1], buffer[j]) = (buffer[j], buffer[j - 1]);
                j--;
            }
        }
    }

    private static void Compose(List<int> buffer, Tables tables)
    {
        if (buffer.Count == 0)
        {
            return;
        }
        var starterPos = 0;
        var starter = buffer[0];
        var lastClass = tables.Class(starter) == 0 ? 0 : 256; // a leading non-starter blocks
        var outPos = 1;
        for (var i = 1; i < buffer.Count; i++)
        {
            var ch = buffer[i];
            var cc = tables.Class(ch);
            var composite = ComposePair(starter, ch, tables);
            if (composite >= 0 && (lastClass < cc || lastClass == 0))
            {
                buffer[starterPos] = composite;
                starter = composite;
                continue;
            }
            if (cc == 0)
            {
                starterPos = outPos;
                starter = ch;
            }
            lastClass = cc;
            buffer[outPos++] = ch;
        }
        buffer.RemoveRange(outPos, buffer.Count - outPos);
    }

    private static int ComposePair(int first, int second, Tables tables)
    {
        var l = first - LBase;
        if (l is >= 0 and < LCount)
        {
            var v = second - VBase;
            return v is >= 0 and < VCount ? SBase + (l * VCount + v) * TCount : -1;
        }
        var s = first - SBase;
        if (s is >= 0 and < SCount && s % TCount == 0)
        {
            var t = second - TBase;
            return t is > 0 and < TCount ? first + t : -1;
        }
        return tables.Compositions.TryGetValue(((long)first << 21) | (uint)second, out var c) ? c : -1;
    }

    private sealed class Tables
    {
        public required Dictionary<int, int[]> Decompositions { get; init; }
        public required Dictionary<int, int> Classes { get; init; }
        public required Dictionary<long, int> Compositions { get; init; }

        public int Class(int cp) => cp < 0x300 ? 0 : Classes.GetValueOrDefault(cp);

        public static Tables Parse()
        {
            var decompositions = new Dictionary<int, int[]>();
            foreach (var entry in UnicodeNfcData.Decompositions.Split(';'))
            {
                var colon = entry.IndexOf(':', StringComparison.Ordinal);
                decompositions[Hex(entry[..colon])] = entry[(colon + 1)..].Split(',').Select(Hex).ToArray();
            }
            var classes = new Dictionary<int, int>();
            foreach (var entry in UnicodeNfcData.CombiningClasses.Split(';'))
            {
                var f = entry.Split(',');
                int start = Hex(f[0]), count = Hex(f[1]), rank = Hex(f[2]);
                for (var k = 0; k < count; k++)
                {
                    classes[start + k] = rank;
                }
            }
            var compositions = new Dictionary<long, int>();
            foreach (var entry in UnicodeNfcData.Compositions.Split(';'))
            {
                var f = entry.Split(',');
                compositions[((long)Hex(f[0]) << 21) | (uint)Hex(f[1])] = Hex(f[2]);
            }
            return new Tables { Decompositions = decompositions, Classes = classes, Compositions = compositions };
        }

        private static int Hex(string s) => int.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    }
}
