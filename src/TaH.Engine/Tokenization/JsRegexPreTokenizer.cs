using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace TaH.Engine.Tokenization;

/// <summary>
/// Splits text into pieces with the tokenizer's pre-tokenizer regex, matching as transformers.js
/// does (JavaScript <c>u</c>-mode regex): character classes see whole code points, and
/// <c>\s</c>, <c>\d</c>, <c>\w</c> and the contractions group have their JavaScript meaning.
/// </summary>
internal sealed class JsRegexPreTokenizer : PreTokenizer
{
    // The Oniguruma spelling in tokenizer.json that transformers.js rewrites to plain ASCII cases.
    private const string Contractions = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
    private const string ContractionsAscii = "(?:'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";

    private static readonly char[] CategoryStandIns = BuildCategoryStandIns();

    private readonly Regex _regex;

    public JsRegexPreTokenizer(string pattern)
    {
        Pattern = pattern;
        _regex = new Regex(ToDotNetPattern(pattern), RegexOptions.CultureInvariant | RegexOptions.Compiled);
    }

    public string Pattern { get; }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text.AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    public List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int Offset, int Length)>();
        if (text.IsEmpty)
        {
            return pieces;
        }

        // .NET regexes see UTF-16 units, so a letter outside the BMP would not be \p{L}. Each such
        // code point is matched through a BMP character of the same Unicode category instead.
        var hasPairs = false;
        for (var i = 0; i + 1 < text.Length; i++)
        {
            if (char.IsSurrogatePair(text[i], text[i + 1]))
            {
                hasPairs = true;
                break;
            }
        }

        if (!hasPairs)
        {
            foreach (var m in _regex.EnumerateMatches(text))
            {
                if (m.Length > 0)
                {
                    pieces.Add((m.Index, m.Length));
                }
            }
            return pieces;
        }

        var projected = new StringBuilder(text.Length);
        var origin = new List<int>(text.Length + 1);
        for (var i = 0; i < text.Length; i++)
        {
            origin.Add(i);
            if (i + 1 < text.Length && char.IsSurrogatePair(text[i], text[i + 1]))
            {
                var category = CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]));
                projected.Append(CategoryStandIns[(int)category]);
                i++;
            }
            else
            {
                projected.Append(text[i]);
            }
        }
        origin.Add(text.Length);

        foreach (var m in _regex.EnumerateMatches(projected.ToString()))
        {
            if (m.Length > 0)
            {
                var start = origin[m.Index];
                pieces.Add((start, origin[m.Index + m.Length] - start));
            }
        }
        return pieces;
    }

    /// <summary>Rewrites a tokenizer.json (Oniguruma) pattern into a .NET pattern with JavaScript's class meanings.</summary>
    internal static string ToDotNetPattern(string pattern)
    {
        pattern = pattern.Replace(Contractions, ContractionsAscii, StringComparison.Ordinal);
        var sb = new StringBuilder(pattern.Length + 64);
        var inClass = false;
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            if (c == '\\' && i + 1 < pattern.Length)
            {
                var next = pattern[++i];
                var (set, negated) = next switch
                {
                    's' => (JsString.WhiteSpaceClass, false),
                    'S' => (JsString.WhiteSpaceClass, true),
                    'd' => ("0-9", false),
                    'D' => ("0-9", true),
                    'w' => ("A-Za-z0-9_", false),
                    'W' => ("A-Za-z0-9_", true),
                    _ => ((string?)null, false),
                };
                if (set is null)
                {
                    sb.Append(c).Append(next);
                }
                else if (!inClass)
                {
                    sb.Append(negated ? "[^" : "[").Append(set).Append(']');
                }
                else if (!negated)
                {
                    sb.Append(set);
                }
                else
                {
                    throw new NotSupportedException($"'\\{next}' inside a character class");
                }
                continue;
            }
            if (c == '[' && !inClass)
            {
                inClass = true;
            }
            else if (c == ']' && inClass)
            {
                inClass = false;
            }
            sb.Append(c);
        }
        return sb.ToString();
    }

    private static char[] BuildCategoryStandIns()
    {
        var standIns = new char[32];
        Array.Fill(standIns, '\uE000'); // private use: not a letter, number or space
        var found = new bool[32];
        for (var c = 0x80; c <= 0xFFFF; c++)
        {
            var ch = (char)c;
            if (char.IsSurrogate(ch) || JsString.IsWhiteSpace(ch) || ch == '\u0085')
            {
                continue;
            }
            var category = (int)char.GetUnicodeCategory(ch);
            if (!found[category])
            {
                found[category] = true;
                standIns[category] = ch;
            }
        }
        return standIns;
    }
}
