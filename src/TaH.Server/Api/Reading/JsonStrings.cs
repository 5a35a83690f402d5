using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace TaH.Server.Api.Reading;

/// <summary>
/// Checks every string of a parsed body once: well-formed UTF-8, and escapes that make whole
/// UTF-16 (no lone or reversed surrogate <c>\ud800</c>). The JSON parser accepts both, and only
/// reading the string fails later, wherever a reader happens to; here it fails up front as a
/// 400 naming the field by its JSON path.
/// </summary>
internal static class JsonStrings
{
    /// <summary>The path of the first string (a value or a property name) that is not valid text, or null.</summary>
    public static string? FindInvalid(JsonElement root) => Find(root, new StringBuilder());

    private static string? Find(JsonElement element, StringBuilder path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                return IsValid(JsonMarshal.GetRawUtf8Value(element)) ? null : Path(path);
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    int length = path.Length;
                    if (path.Length > 0)
                    {
                        path.Append('.');
                    }

                    if (!IsValid(JsonMarshal.GetRawUtf8PropertyName(property), quoted: false))
                    {
                        path.Length = length;
                        return Path(path);
                    }

                    path.Append(property.Name);
                    if (Find(property.Value, path) is { } found)
                    {
                        return found;
                    }

                    path.Length = length;
                }

                return null;
            case JsonValueKind.Array:
                int index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    int length = path.Length;
                    path.Append('[').Append(index++).Append(']');
                    if (Find(item, path) is { } found)
                    {
                        return found;
                    }

                    path.Length = length;
                }

                return null;
            default:
                return null;
        }
    }

    // The body as a whole has no field name: the root.
    private static string Path(StringBuilder path) => path.Length == 0 ? "$" : path.ToString();

    /// <summary>Raw JSON string bytes (with their quotes unless <paramref name="quoted"/> is false) that decode to valid UTF-16.</summary>
    internal static bool IsValid(ReadOnlySpan<byte> raw, bool quoted = true)
    {
        var text = quoted ? raw[1..^1] : raw;
        if (!Utf8.IsValid(text))
        {
            return false; // raw bytes: FF FE, an overlong C0 80, an encoded surrogate ED A0 80
        }

        // Escapes are ASCII, so the parser has already checked their syntax: \uXXXX is 4 hex digits.
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] != '\\')
            {
                continue;
            }

            if (text[i + 1] != 'u')
            {
                i++;
                continue;
            }

            int unit = Hex(text.Slice(i + 2, 4));
            if (unit is >= 0xDC00 and <= 0xDFFF)
            {
                return false; // a low surrogate first
            }

            if (unit is >= 0xD800 and <= 0xDBFF)
            {
                if (i + 11 >= text.Length || text[i + 6] != '\\' || text[i + 7] != 'u' || Hex(text.Slice(i + 8, 4)) is < 0xDC00 or > 0xDFFF)
                {
                    return false; // a high surrogate without its low one
                }

                i += 6;
            }

            i += 5;
        }

        return true;
    }

    private static int Hex(ReadOnlySpan<byte> digits)
    {
        int value = 0;
        foreach (byte d in digits)
        {
            value = (value << 4) | (d <= '9' ? d - '0' : (d | 0x20) - 'a' + 10);
        }

        return value;
    }
}
