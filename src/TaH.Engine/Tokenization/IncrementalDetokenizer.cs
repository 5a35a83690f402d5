using System.Text;

namespace TaH.Engine.Tokenization;

/// <summary>
/// Turns a stream of token ids into text pieces for streaming. A UTF-8 character split across
/// tokens is held back until its last byte arrives; bytes that can never complete a character
/// come out as U+FFFD, as <see cref="TextTokenizer.Decode"/> does. The pieces of a sequence,
/// with <see cref="Flush"/>'s at the end, add up to <see cref="TextTokenizer.Decode"/> of all
/// its ids. Not thread-safe: one per sequence.
/// </summary>
public sealed class IncrementalDetokenizer
{
    private readonly TextTokenizer _tokenizer;
    private readonly Decoder _decoder = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[64];

    public IncrementalDetokenizer(TextTokenizer tokenizer, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        SkipSpecialTokens = skipSpecialTokens;
    }

    public bool SkipSpecialTokens { get; }

    /// <summary>Adds one token; returns the text that is complete now (possibly empty).</summary>
    public string Add(int id)
    {
        if (SkipSpecialTokens && _tokenizer.IsSpecial(id))
        {
            return string.Empty;
        }
        return DecodeBytes(_tokenizer.TokenBytes(id), flush: false);
    }

    /// <summary>Adds several tokens; returns the text that is complete now.</summary>
    public string Add(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var sb = new StringBuilder();
        foreach (var id in ids)
        {
            sb.Append(Add(id));
        }
        return sb.ToString();
    }

    /// <summary>Ends the sequence: bytes still held back come out as U+FFFD. The detokenizer can then be reused.</summary>
    public string Flush() => DecodeBytes(ReadOnlySpan<byte>.Empty, flush: true);

    private string DecodeBytes(ReadOnlySpan<byte> bytes, bool flush)
    {
        var needed = _decoder.GetCharCount(bytes, flush: false) + 4;
        if (_chars.Length < needed)
        {
            _chars = new char[Math.Max(needed, _chars.Length * 2)];
        }
        var count = _decoder.GetChars(bytes, _chars, flush);
        return count == 0 ? string.Empty : new string(_chars, 0, count);
    }
}
