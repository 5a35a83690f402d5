using System.Globalization;

namespace TaH.Engine.Constraints;

/// <summary>
/// Parses the regular subset of regex syntax into a <see cref="Pattern"/> over UTF-8 that matches
/// the whole output: literals and escapes, classes <c>[a-z]</c> and <c>[^...]</c>, <c>.</c> (any
/// character but a new line), <c>\d \w \s</c> and their negations (ASCII, as in JavaScript),
/// groups (plain, non-capturing, named), <c>|</c>, <c>* + ? {n} {n,} {n,m}</c> (lazy forms match the
/// same strings), <c>^</c> at the start and <c>$</c> at the end. Whatever needs more than a finite
/// automaton (backreferences, lookaround, word boundaries, atomic groups, possessive quantifiers,
/// inline flags, Unicode properties) is refused by name.
/// </summary>
internal sealed class RegexCompiler
{
    public const int MaxRepeat = 1000;

    private static readonly (int, int)[] Digits = [('0', '9')];
    private static readonly (int, int)[] Word = [('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
    private static readonly (int, int)[] Space = [('\t', '\r'), (' ', ' ')];

    private readonly string _text;
    private int _pos;

    private RegexCompiler(string text) => _text = text;

    public static Pattern Compile(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        var parser = new RegexCompiler(pattern);
        if (parser.Peek('^'))
        {
            parser._pos++;
        }

        var result = parser.Alternation();
        if (parser._pos < pattern.Length)
        {
            throw parser.Error(pattern[parser._pos] == ')' ? "an unmatched ')'" : $"an unexpected '{pattern[parser._pos]}'");
        }

        return result;
    }

    private bool Peek(char c) => _pos < _text.Length && _text[_pos] == c;

    private bool AtEnd => _pos >= _text.Length;

    private ConstraintException Error(string what) => new($"the regex is not valid: {what} at position {_pos}", ConstraintError.Invalid);

    private static ConstraintException Unsupported(string construct) =>
        ConstraintException.Unsupported(construct, $"the regex construct {construct} is not supported (only regular syntax: literals, classes, groups, |, * + ? {{n,m}}, ^ and $ at the ends)");

    private Pattern Alternation()
    {
        var parts = new List<Pattern> { Sequence() };
        while (Peek('|'))
        {
            _pos++;
            parts.Add(Sequence());
        }

        return Pattern.Alt([.. parts]);
    }

    private Pattern Sequence()
    {
        var parts = new List<Pattern>();
        while (!AtEnd && !Peek('|') && !Peek(')'))
        {
            if (Peek('$'))
            {
                _pos++;
                if (!AtEnd && !Peek(')') && !Peek('|'))
                {
                    throw Unsupported("'$' before the end");
                }

                if (!AtEnd)
                {
                    throw Unsupported("'$' inside a group or alternative");
                }

                continue;
            }

            if (Peek('^'))
            {
                throw Unsupported("'^' after the start");
            }

            var atom = Atom();
            parts.Add(Quantified(atom));
        }

        return Pattern.Seq([.. parts]);
    }

    private Pattern Quantified(Pattern atom)
    {
        while (!AtEnd)
        {
            int min, max;
            char c = _text[_pos];
            if (c == '*')
            {
                (min, max) = (0, -1);
                _pos++;
            }
            else if (c == '+')
            {
                (min, max) = (1, -1);
                _pos++;
            }
            else if (c == '?')
            {
                (min, max) = (0, 1);
                _pos++;
            }
            else if (c == '{' && TryBraces(out min, out max))
            {
            }
            else
            {
                return atom;
            }

            if (Peek('?'))
            {
                _pos++; // lazy: the same strings
            }
            else if (Peek('+'))
            {
                throw Unsupported("possessive quantifier");
            }

            atom = Pattern.Repeat(atom, min, max);
        }

        return atom;
    }

    private bool TryBraces(out int min, out int max)
    {
        min = max = 0;
        int close = _text.IndexOf('}', _pos);
        if (close < 0)
        {
            return false;
        }

        var body = _text.AsSpan(_pos + 1, close - _pos - 1);
        int comma = body.IndexOf(',');
        static bool Number(ReadOnlySpan<char> s, out int value) => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out value);
        if (comma < 0)
        {
            if (!Number(body, out min))
            {
                return false; // a literal '{', as in .NET
            }

            max = min;
        }
        else
        {
            if (!Number(body[..comma], out min))
            {
                return false;
            }

            var upper = body[(comma + 1)..];
            if (upper.IsEmpty)
            {
                max = -1;
            }
            else if (!Number(upper, out max))
            {
                return false;
            }
        }

        if (min > MaxRepeat || max > MaxRepeat)
        {
            throw ConstraintException.Unsupported("{n,m}", $"the regex repeats something more than {MaxRepeat} times; that is not supported");
        }

        if (max >= 0 && max < min)
        {
            throw Error($"a repetition {{{min},{max}}} whose maximum is below its minimum");
        }

        _pos = close + 1;
        return true;
    }

    private Pattern Atom()
    {
        char c = _text[_pos];
        switch (c)
        {
            case '(':
                return Group();
            case '[':
                return Chars(Class());
            case '.':
                _pos++;
                return Chars(Utf8Ranges.Complement([('\n', '\n')]));
            case '\\':
                _pos++;
                return Chars(Escape(inClass: false).Ranges);
            case '*' or '+' or '?':
                throw Error($"a quantifier '{c}' with nothing to repeat");
            case '{' when TryBracesAhead():
                throw Error("a quantifier '{' with nothing to repeat");
            default:
                {
                    int cp = char.ConvertToUtf32(_text, _pos);
                    _pos += char.IsSurrogatePair(_text, _pos) ? 2 : 1;
                    return Chars([(cp, cp)]);
                }
        }
    }

    private bool TryBracesAhead()
    {
        int save = _pos;
        bool ok = TryBraces(out _, out _);
        _pos = save;
        return ok;
    }

    private static Pattern Chars(IEnumerable<(int, int)> ranges)
    {
        var normalized = Utf8Ranges.Normalize(ranges);
        if (normalized.Count == 0)
        {
            return Pattern.Nothing;
        }

        return Utf8Ranges.Pattern(normalized);
    }

    private Pattern Group()
    {
        _pos++;
        if (Peek('?'))
        {
            _pos++;
            if (Peek(':'))
            {
                _pos++;
            }
            else if (_text.AsSpan(_pos).StartsWith("<=") || _text.AsSpan(_pos).StartsWith("<!") || Peek('=') || Peek('!'))
            {
                throw Unsupported("lookaround (?= (?! (?<= (?<!");
            }
            else if (Peek('<') || (Peek('P') && _pos + 1 < _text.Length && _text[_pos + 1] == '<'))
            {
                int close = _text.IndexOf('>', _pos);
                if (close < 0)
                {
                    throw Error("a group name without '>'");
                }

                _pos = close + 1;
            }
            else if (Peek('>'))
            {
                throw Unsupported("atomic group (?>");
            }
            else if (Peek('#'))
            {
                throw Unsupported("comment group (?#");
            }
            else
            {
                throw Unsupported("inline flags (?...)");
            }
        }

        var inner = Alternation();
        if (!Peek(')'))
        {
            throw Error("a '(' without ')'");
        }

        _pos++;
        return inner;
    }

    private List<(int, int)> Class()
    {
        _pos++;
        bool negate = Peek('^');
        if (negate)
        {
            _pos++;
        }

        var ranges = new List<(int, int)>();
        bool first = true;
        while (true)
        {
            if (AtEnd)
            {
                throw Error("a '[' without ']'");
            }

            if (Peek(']') && !first)
            {
                _pos++;
                break;
            }

            if (Peek('[') && _pos + 1 < _text.Length && _text[_pos + 1] is ':' or '=' or '.')
            {
                throw Unsupported("POSIX class [[:...:]]");
            }

            first = false;
            var (lo, set) = ClassAtom();
            if (set is not null)
            {
                ranges.AddRange(set);
                continue;
            }

            if (Peek('-') && _pos + 1 < _text.Length && _text[_pos + 1] != ']')
            {
                _pos++;
                var (hi, hiSet) = ClassAtom();
                if (hiSet is not null)
                {
                    throw Error("a class range ending in a class escape");
                }

                if (hi < lo)
                {
                    throw Error("a class range in reverse order");
                }

                ranges.Add((lo, hi));
            }
            else
            {
                ranges.Add((lo, lo));
            }
        }

        return negate ? Utf8Ranges.Complement(ranges) : Utf8Ranges.Normalize(ranges);
    }

    private (int Char, IReadOnlyList<(int, int)>? Set) ClassAtom()
    {
        if (Peek('\\'))
        {
            _pos++;
            var (set, isClass) = Escape(inClass: true);
            return isClass ? (0, set) : (set[0].Item1, null);
        }

        int cp = char.ConvertToUtf32(_text, _pos);
        _pos += char.IsSurrogatePair(_text, _pos) ? 2 : 1;
        return (cp, null);
    }

    /// <summary>After a backslash: the characters it stands for, and whether it is a class (\d) rather than one character.</summary>
    private (List<(int, int)> Ranges, bool IsClass) Escape(bool inClass)
    {
        if (AtEnd)
        {
            throw Error("a pattern ending in a backslash");
        }

        char c = _text[_pos++];
        static (List<(int, int)>, bool) Set(IEnumerable<(int, int)> ranges) => ([.. ranges], true);
        static (List<(int, int)>, bool) One(int cp) => ([(cp, cp)], false);
        switch (c)
        {
            case 'd':
                return Set(Digits);
            case 'D':
                return Set(Utf8Ranges.Complement(Digits));
            case 'w':
                return Set(Word);
            case 'W':
                return Set(Utf8Ranges.Complement(Word));
            case 's':
                return Set(Space);
            case 'S':
                return Set(Utf8Ranges.Complement(Space));
            case 'n':
                return One('\n');
            case 'r':
                return One('\r');
            case 't':
                return One('\t');
            case 'f':
                return One('\f');
            case 'v':
                return One('\v');
            case '0':
                return One(0);
            case 'b' when inClass:
                return One('\b');
            case 'b' or 'B':
                throw Unsupported($"word boundary \\{c}");
            case 'A' or 'z' or 'Z' or 'G':
                throw Unsupported($"anchor \\{c}");
            case >= '1' and <= '9':
                throw Unsupported("backreference \\" + c);
            case 'k':
                throw Unsupported("backreference \\k");
            case 'p' or 'P':
                throw Unsupported($"Unicode property \\{c}{{...}}");
            case 'x':
                return One(Hex(2));
            case 'u':
                if (Peek('{'))
                {
                    int close = _text.IndexOf('}', _pos);
                    if (close < 0 || !int.TryParse(_text.AsSpan(_pos + 1, close - _pos - 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int cp) || cp > Utf8Ranges.MaxScalar)
                    {
                        throw Error("a malformed \\u{...}");
                    }

                    _pos = close + 1;
                    return One(cp);
                }

                return One(Hex(4));
            default:
                if (char.IsAsciiLetterOrDigit(c))
                {
                    throw Unsupported($"escape \\{c}");
                }

                return One(c);
        }
    }

    private int Hex(int digits)
    {
        if (_pos + digits > _text.Length || !int.TryParse(_text.AsSpan(_pos, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int value))
        {
            throw Error($"an escape without {digits} hex digits");
        }

        _pos += digits;
        return value;
    }
}
