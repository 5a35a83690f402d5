namespace TaH.Engine.Tokenization;

/// <summary>
/// JavaScript string semantics that the reference implementations (transformers.js and
/// @huggingface/jinja) rely on and that differ from .NET's and Python's.
/// </summary>
internal static class JsString
{
    /// <summary>The contents of a regex character class matching what JavaScript's <c>\s</c> and <c>trim()</c> treat as white space.</summary>
    public const string WhiteSpaceClass = @"\t\n\v\f\r \u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\uFEFF";

    /// <summary>ECMAScript WhiteSpace and LineTerminator: unlike .NET, U+FEFF is one and U+0085 is not.</summary>
    public static bool IsWhiteSpace(char c) => c switch
    {
        '\t' or '\n' or '\v' or '\f' or '\r' or ' ' or '\u00A0' or '\u1680' => true,
        >= '\u2000' and <= '\u200A' => true,
        '\u2028' or '\u2029' or '\u202F' or '\u205F' or '\u3000' or '\uFEFF' => true,
        _ => false,
    };

    public static string Trim(string s) => TrimEnd(TrimStart(s));

    public static string TrimStart(string s)
    {
        var i = 0;
        while (i < s.Length && IsWhiteSpace(s[i]))
        {
            i++;
        }
        return i == 0 ? s : s[i..];
    }

    public static string TrimEnd(string s)
    {
        var i = s.Length;
        while (i > 0 && IsWhiteSpace(s[i - 1]))
        {
            i--;
        }
        return i == s.Length ? s : s[..i];
    }
}
