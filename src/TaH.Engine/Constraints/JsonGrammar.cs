using System.Globalization;
using System.Numerics;
using static TaH.Engine.Constraints.Pattern;

namespace TaH.Engine.Constraints;

/// <summary>
/// The rules every JSON grammar shares, each made once per grammar: bounded whitespace, numbers,
/// integer ranges, literals, strings, and JSON of any shape (objects with distinct keys).
/// </summary>
/// <remarks>
/// Whitespace is bounded so that a model cannot pad forever: after <c>{</c>, <c>[</c> and
/// <c>,</c> and before <c>}</c> and <c>]</c> (and before a <c>,</c> between counted array items),
/// nothing, one space, or a new line and up to <see cref="MaxIndent"/> spaces; after <c>:</c> at
/// most one space; nowhere else. Numbers have at
/// most 16 integer digits, 15 fraction digits and a two-digit exponent, so a number always ends
/// (and always fits a double).
/// </remarks>
internal sealed class JsonGrammar(GrammarBuilder g)
{
    private readonly GrammarBuilder _g = g;

    public const int MaxIndent = 16;
    public const int MaxIntegerDigits = 16;

    public static readonly BigInteger Largest = BigInteger.Pow(10, MaxIntegerDigits) - 1;

    public GrammarBuilder Builder => _g;

    public static Pattern Ws { get; } = Opt(Alt(Lit(" "), Seq(Lit("\n"), Repeat(Lit(" "), 0, MaxIndent))));

    public static Pattern Colon { get; } = Seq(Lit(":"), Opt(Lit(" ")));

    public static Pattern Digit { get; } = Range((byte)'0', (byte)'9');

    public int String(int min = 0, int max = int.MaxValue) => _g.String(min, max);

    public int Number() => _g.Shared("number", () => _g.Add("number", Seq(
        Opt(Lit("-")),
        Alt(Lit("0"), Seq(Range((byte)'1', (byte)'9'), Repeat(Digit, 0, MaxIntegerDigits - 1))),
        Opt(Seq(Lit("."), Repeat(Digit, 1, 15))),
        Opt(Seq(Alt(Lit("e"), Lit("E")), Opt(Alt(Lit("+"), Lit("-"))), Repeat(Digit, 1, 2))))));

    /// <summary>Integers in [<paramref name="lo"/>, <paramref name="hi"/>] (within ±(10^16 - 1)), written as JSON writes them.</summary>
    public int Integer(BigInteger lo, BigInteger hi) => _g.Shared($"integer[{lo},{hi}]", () => _g.Add($"integer[{lo},{hi}]", IntegerRange(lo, hi)));

    public int Boolean() => _g.Shared("boolean", () => _g.Add("boolean", Alt(Lit("true"), Lit("false"))));

    /// <summary>Any JSON value.</summary>
    public int Any() => _g.Shared("any", () =>
    {
        int any = _g.Reserve("any");
        int obj = FreeObject(any);
        int array = _g.Add("array", Seq(Lit("["), Ws, Opt(Seq(Call(any), Star(Seq(Lit(","), Ws, Call(any))), Ws)), Lit("]")));
        _g.Define(any, Alt(Call(String()), Call(Number()), Call(obj), Call(array), Lit("true"), Lit("false"), Lit("null")));
        return any;
    });

    /// <summary>An object with any keys (each different) and values of rule <paramref name="value"/>.</summary>
    public int FreeObject(int value) => _g.Shared($"object:{value}", () =>
    {
        int key = _g.Shared("key", () => _g.String(0, int.MaxValue, key: true));
        var entry = Seq(Call(key, Effect.AddKey), Colon, Call(value));
        return _g.Add("object", Seq(Lit("{"), Ws, Opt(Seq(entry, Star(Seq(Lit(","), Ws, entry)), Ws)), Lit("}")));
    });

    private static Pattern IntegerRange(BigInteger lo, BigInteger hi)
    {
        var parts = new List<Pattern>();
        if (lo < 0)
        {
            // -a .. -b for the negative part [lo, min(hi, -1)]
            var negHi = BigInteger.Min(hi, -1);
            if (lo <= negHi)
            {
                parts.Add(Seq(Lit("-"), Positive(-negHi, -lo)));
            }
        }

        if (lo <= 0 && hi >= 0)
        {
            parts.Add(Lit("0"));
        }

        var posLo = BigInteger.Max(lo, 1);
        if (posLo <= hi)
        {
            parts.Add(Positive(posLo, hi));
        }

        return Alt([.. parts]);
    }

    // Positive integers in [lo, hi], no leading zeros: one same-length range per digit count.
    private static Pattern Positive(BigInteger lo, BigInteger hi)
    {
        var parts = new List<Pattern>();
        string loText = lo.ToString(CultureInfo.InvariantCulture), hiText = hi.ToString(CultureInfo.InvariantCulture);
        for (int length = loText.Length; length <= hiText.Length; length++)
        {
            var from = length == loText.Length ? lo : BigInteger.Pow(10, length - 1);
            var to = length == hiText.Length ? hi : BigInteger.Pow(10, length) - 1;
            if (from <= to)
            {
                parts.Add(SameLength(from.ToString(CultureInfo.InvariantCulture), to.ToString(CultureInfo.InvariantCulture)));
            }
        }

        return Alt([.. parts]);
    }

    // Same-length decimal strings in [lo, hi]; tails that span every digit stay one range, so the
    // pattern is linear in the length.
    private static Pattern SameLength(string lo, string hi)
    {
        if (lo.Length == 0)
        {
            return Empty;
        }

        int rest = lo.Length - 1;
        bool loFloor = lo.AsSpan(1).IndexOfAnyExcept('0') < 0, hiCeiling = hi.AsSpan(1).IndexOfAnyExcept('9') < 0;
        if (loFloor && hiCeiling)
        {
            return Seq(Range((byte)lo[0], (byte)hi[0]), Repeat(Digit, rest, rest));
        }

        if (lo[0] == hi[0])
        {
            return Seq(Byte(lo[0]), SameLength(lo[1..], hi[1..]));
        }

        var alternatives = new List<Pattern>();
        char from = lo[0], to = hi[0];
        if (!loFloor)
        {
            alternatives.Add(Seq(Byte(lo[0]), SameLength(lo[1..], new string('9', rest))));
            from++;
        }

        if (!hiCeiling)
        {
            to--;
        }

        if (from <= to)
        {
            alternatives.Add(Seq(Range((byte)from, (byte)to), Repeat(Digit, rest, rest)));
        }

        if (!hiCeiling)
        {
            alternatives.Add(Seq(Byte(hi[0]), SameLength(new string('0', rest), hi[1..])));
        }

        return Alt([.. alternatives]);
    }
}
