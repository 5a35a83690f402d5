namespace TaH.Engine.Constraints;

/// <summary>
/// The byte automaton of a JSON string: well-formed UTF-8 (no overlong forms, no surrogates),
/// no control characters, the escapes of RFC 8259 with <c>\u</c> surrogates only in valid pairs.
/// A character starts on one byte and completes on another (its last byte, or the last of its
/// escape); the count of a string frame goes up on completion, and a character may only start
/// while the count is below the maximum, so a string can always be closed.
/// </summary>
/// <remarks>
/// minLength is kept in terms of what validators count: JSON Schema counts code points, while
/// .NET validators (JsonSchema.Net, NJsonSchema) count grapheme clusters, which can be fewer. So
/// the first <c>minLength</c> characters (state <see cref="P"/>) are printable ASCII other than
/// <c>"</c> and <c>\</c>: each of those after another one (or at the start) begins a cluster of
/// its own, so both counts reach the minimum. After that, any character.
/// </remarks>
internal static class StringAutomaton
{
    public const int Q = 0;   // before the opening quote
    public const int P = 1;   // inside, fewer than minLength characters so far: printable ASCII only
    public const int B = 2;   // inside, between characters
    public const int C1 = 3;  // one continuation byte to go
    public const int C2 = 4;
    public const int C3 = 5;
    public const int XE0 = 6; // after E0: A0-BF (no overlong forms)
    public const int XED = 7; // after ED: 80-9F (no surrogates)
    public const int XF0 = 8; // after F0: 90-BF
    public const int XF4 = 9; // after F4: 80-8F (up to U+10FFFF)
    public const int Esc = 10;
    public const int U4 = 11; // \u, four hex digits to go
    public const int U3 = 12;
    public const int U2 = 13;
    public const int U1 = 14;
    public const int UD = 15; // \uD: a surrogate decides on the next digit
    public const int H2 = 16; // high surrogate, two hex digits to go
    public const int H1 = 17;
    public const int L0 = 18; // expecting the low surrogate's backslash
    public const int L1 = 19; // ... its u
    public const int L2 = 20; // ... its D
    public const int L3 = 21; // ... C-F
    public const int L4 = 22;
    public const int L5 = 23;
    public const int Closed = 24;
    public const int States = 25;

    /// <summary>The step flags, in the high bits of <see cref="Next"/>'s result.</summary>
    public const int Starts = 1 << 8;

    public const int Completes = 1 << 9;

    public const int StateMask = 0xFF;

    /// <summary>Printable ASCII but the quote and backslash: the characters of state <see cref="P"/>.</summary>
    public static bool IsPlainAscii(byte b) => b is >= 0x20 and <= 0x7E and not (byte)'"' and not (byte)'\\';

    /// <summary>The next state and flags, or -1. From <see cref="Q"/> the quote leads to <see cref="B"/>; the frame picks P when a minimum applies.</summary>
    public static int Next(int state, byte b, bool key)
    {
        switch (state)
        {
            case Q:
                return b == '"' ? B : -1;
            case P:
                return IsPlainAscii(b) ? P | Starts | Completes : -1;
            case B:
                if (b == '"')
                {
                    return Closed;
                }

                if (b == '\\')
                {
                    return key ? -1 : Esc | Starts;
                }

                return b switch
                {
                    < 0x20 => -1,
                    < 0x80 => B | Starts | Completes,
                    < 0xC2 => -1,
                    < 0xE0 => C1 | Starts,
                    0xE0 => XE0 | Starts,
                    0xED => XED | Starts,
                    < 0xF0 => C2 | Starts,
                    0xF0 => XF0 | Starts,
                    < 0xF4 => C3 | Starts,
                    0xF4 => XF4 | Starts,
                    _ => -1,
                };
            case C1:
                return b is >= 0x80 and <= 0xBF ? B | Completes : -1;
            case C2:
                return b is >= 0x80 and <= 0xBF ? C1 : -1;
            case C3:
                return b is >= 0x80 and <= 0xBF ? C2 : -1;
            case XE0:
                return b is >= 0xA0 and <= 0xBF ? C1 : -1;
            case XED:
                return b is >= 0x80 and <= 0x9F ? C1 : -1;
            case XF0:
                return b is >= 0x90 and <= 0xBF ? C2 : -1;
            case XF4:
                return b is >= 0x80 and <= 0x8F ? C2 : -1;
            case Esc:
                return b switch
                {
                    (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t' => B | Completes,
                    (byte)'u' => U4,
                    _ => -1,
                };
            case U4:
                return b is (byte)'d' or (byte)'D' ? UD : IsHex(b) ? U3 : -1;
            case U3:
                return IsHex(b) ? U2 : -1;
            case U2:
                return IsHex(b) ? U1 : -1;
            case U1:
                return IsHex(b) ? B | Completes : -1;
            case UD:
                return b switch
                {
                    >= (byte)'0' and <= (byte)'7' => U2,
                    (byte)'8' or (byte)'9' or (byte)'a' or (byte)'b' or (byte)'A' or (byte)'B' => H2,
                    _ => -1,
                };
            case H2:
                return IsHex(b) ? H1 : -1;
            case H1:
                return IsHex(b) ? L0 : -1;
            case L0:
                return b == '\\' ? L1 : -1;
            case L1:
                return b == 'u' ? L2 : -1;
            case L2:
                return b is (byte)'d' or (byte)'D' ? L3 : -1;
            case L3:
                return b is (>= (byte)'c' and <= (byte)'f') or (>= (byte)'C' and <= (byte)'F') ? L4 : -1;
            case L4:
                return IsHex(b) ? L5 : -1;
            case L5:
                return IsHex(b) ? B | Completes : -1;
            default:
                return -1;
        }
    }

    private static bool IsHex(byte b) => b is (>= (byte)'0' and <= (byte)'9') or (>= (byte)'a' and <= (byte)'f') or (>= (byte)'A' and <= (byte)'F');
}
