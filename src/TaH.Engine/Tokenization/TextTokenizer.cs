using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using TaH.Engine.Checkpoints;

namespace TaH.Engine.Tokenization;

/// <summary>
/// A Hugging Face byte-level BPE tokenizer (Qwen2/Qwen3, GPT-2 style) loaded from a model
/// directory's <c>tokenizer.json</c> and <c>tokenizer_config.json</c>. Encoding reproduces the
/// Hugging Face tokenizers (and transformers.js) ids: added tokens are split out first, the rest
/// is NFC-normalized if the tokenizer says so, pre-split by its regex and merged by BPE.
/// Thread-safe once loaded.
/// </summary>
public sealed class TextTokenizer
{
    // GPT-2's pre-tokenizer, used by a ByteLevel pre-tokenizer with use_regex = true.
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly TiktokenTokenizer _bpe;
    private readonly bool _nfc;
    private readonly byte[]?[] _tokenBytes;
    private readonly string?[] _tokenStrings;
    private readonly bool[] _special;
    private readonly Dictionary<string, int> _tokenToId;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly Regex? _addedTokenRegex;
    private readonly string? _chatTemplateFamily;
    private readonly string _configPath;
    private ChatTemplate? _chatTemplate;

    private TextTokenizer(
        string directory,
        TiktokenTokenizer bpe,
        bool nfc,
        byte[]?[] tokenBytes,
        string?[] tokenStrings,
        bool[] special,
        Dictionary<string, int> tokenToId,
        List<AddedToken> addedTokens,
        TokenizerConfig config,
        string configPath,
        string? chatTemplateFamily)
    {
        Directory = directory;
        _bpe = bpe;
        _nfc = nfc;
        _tokenBytes = tokenBytes;
        _tokenStrings = tokenStrings;
        _special = special;
        _tokenToId = tokenToId;
        _addedByContent = addedTokens.ToDictionary(t => t.Content, StringComparer.Ordinal);
        if (addedTokens.Count > 0)
        {
            // Longest first, so that the leftmost match is also the longest, as in Hugging Face.
            var alternatives = addedTokens.Select(t => t.Content)
                .OrderByDescending(c => c.Length)
                .ThenBy(c => c, StringComparer.Ordinal)
                .Select(Regex.Escape);
            _addedTokenRegex = new Regex(string.Join("|", alternatives), RegexOptions.CultureInvariant);
        }
        AddedTokens = addedTokens.Select(t => t.Content).ToArray();
        EosToken = config.EosToken;
        PadToken = config.PadToken;
        BosToken = config.BosToken;
        ChatTemplateText = config.ChatTemplate;
        _configPath = configPath;
        _chatTemplateFamily = chatTemplateFamily;
    }

    /// <summary>The directory the tokenizer was loaded from.</summary>
    public string Directory { get; }

    /// <summary>One more than the largest id of the vocabulary and the added tokens.</summary>
    public int VocabSize => _tokenBytes.Length;

    /// <summary>The contents of the added tokens (special or not), in id order.</summary>
    public IReadOnlyList<string> AddedTokens { get; }

    public string? EosToken { get; }

    public string? PadToken { get; }

    public string? BosToken { get; }

    public int? EosTokenId => EosToken is null ? null : TokenToId(EosToken);

    public int? PadTokenId => PadToken is null ? null : TokenToId(PadToken);

    public int? BosTokenId => BosToken is null ? null : TokenToId(BosToken);

    /// <summary>The Jinja <c>chat_template</c> text from tokenizer_config.json, if any.</summary>
    public string? ChatTemplateText { get; }

    /// <summary>
    /// The chat template: the family forced at load time, else the one recognised from
    /// <see cref="ChatTemplateText"/>; null when there is neither. Throws
    /// <see cref="CheckpointException"/> when the template text is not one this engine can render.
    /// </summary>
    public ChatTemplate? ChatTemplate
    {
        get
        {
            if (_chatTemplate is not null)
            {
                return _chatTemplate;
            }
            if (_chatTemplateFamily is not null)
            {
                return _chatTemplate = ChatTemplate.ForFamily(_chatTemplateFamily);
            }
            if (ChatTemplateText is null)
            {
                return null;
            }
            return _chatTemplate = ChatTemplate.FromJinja(ChatTemplateText, _configPath);
        }
    }

    /// <summary>
    /// Loads <c>tokenizer.json</c> (required) and <c>tokenizer_config.json</c> (optional) from
    /// <paramref name="directory"/>. <paramref name="chatTemplateFamily"/> ("qwen3", "chatml")
    /// overrides the family recognised from the config's chat template.
    /// </summary>
    public static TextTokenizer Load(string directory, string? chatTemplateFamily = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (chatTemplateFamily is not null)
        {
            _ = ChatTemplate.ForFamily(chatTemplateFamily); // fail early on an unknown name
        }

        var tokenizerPath = Path.Combine(directory, "tokenizer.json");
        var configPath = Path.Combine(directory, "tokenizer_config.json");
        if (!File.Exists(tokenizerPath))
        {
            throw new CheckpointException(tokenizerPath, "file not found (a byte-level BPE tokenizer.json is required)");
        }

        var config = TokenizerConfig.Read(configPath);
        using var doc = ParseJson(tokenizerPath);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new CheckpointException(tokenizerPath, "is not a JSON object");
        }

        var model = Property(root, "model");
        if (model is not { ValueKind: JsonValueKind.Object } m)
        {
            throw new CheckpointException(tokenizerPath, "has no \"model\" object");
        }
        CheckModel(tokenizerPath, m);
        var nfc = CheckNormalizer(tokenizerPath, Property(root, "normalizer"));
        var pattern = PreTokenizerPattern(tokenizerPath, Property(root, "pre_tokenizer"));
        CheckDecoder(tokenizerPath, Property(root, "decoder"));

        var vocab = ReadVocab(tokenizerPath, m);
        var added = ReadAddedTokens(tokenizerPath, root);
        var addedIds = added.Select(t => t.Id).ToHashSet();

        var size = 0;
        foreach (var (_, id) in vocab)
        {
            size = Math.Max(size, id + 1);
        }
        foreach (var t in added)
        {
            size = Math.Max(size, t.Id + 1);
        }

        var tokenBytes = new byte[]?[size];
        var tokenStrings = new string?[size];
        var special = new bool[size];
        var tokenToId = new Dictionary<string, int>(vocab.Count + added.Count, StringComparer.Ordinal);
        var tiktoken = new StringBuilder(vocab.Count * 16);
        var singleBytes = new bool[256];
        foreach (var (token, id) in vocab)
        {
            var bytes = ByteLevelAlphabet.TokenToBytes(token)
                ?? throw new CheckpointException(tokenizerPath,
                    $"vocabulary token {JsonSerializer.Serialize(token)} (id {id}) is not byte-level: only byte-level BPE tokenizers are supported");
            if (bytes.Length == 0)
            {
                throw new CheckpointException(tokenizerPath, $"vocabulary has an empty token (id {id})");
            }
            if (bytes.Length == 1)
            {
                singleBytes[bytes[0]] = true;
            }
            tokenBytes[id] = bytes;
            tokenStrings[id] = token;
            tokenToId[token] = id;
            if (!addedIds.Contains(id))
            {
                tiktoken.Append(Convert.ToBase64String(bytes)).Append(' ').Append(id).Append('\n');
            }
        }
        var missing = Array.IndexOf(singleBytes, false);
        if (missing >= 0)
        {
            throw new CheckpointException(tokenizerPath, $"vocabulary has no token for byte 0x{missing:X2}, so it is not a byte-level BPE vocabulary");
        }
        CheckMerges(tokenizerPath, m, vocab, added);
        foreach (var t in added)
        {
            // An added token stands for its text, also when the vocabulary has an entry with its id.
            tokenBytes[t.Id] = Encoding.UTF8.GetBytes(t.Content);
            tokenStrings[t.Id] = t.Content;
            tokenToId[t.Content] = t.Id;
            // transformers.js also counts the config's additional_special_tokens as special.
            special[t.Id] = t.Special || config.AdditionalSpecialTokens.Contains(t.Content);
        }

        JsRegexPreTokenizer preTokenizer;
        try
        {
            preTokenizer = new JsRegexPreTokenizer(pattern);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            throw new CheckpointException(tokenizerPath, $"pre-tokenizer regex is not supported: {e.Message}", e);
        }

        TiktokenTokenizer bpe;
        using (var stream = new MemoryStream(Encoding.ASCII.GetBytes(tiktoken.ToString())))
        {
            bpe = TiktokenTokenizer.Create(stream, preTokenizer, normalizer: null, specialTokens: null, cacheSize: 16384);
        }

        return new TextTokenizer(directory, bpe, nfc, tokenBytes, tokenStrings, special, tokenToId, added, config, configPath, chatTemplateFamily);
    }

    /// <summary>Encodes text to ids, adding no BOS/EOS; added tokens in the text become their ids.</summary>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        if (_addedTokenRegex is null)
        {
            EncodeOrdinary(text, ids);
            return ids;
        }

        // Split as transformers.js does: added tokens first, then lstrip/rstrip trim the
        // neighbouring pieces, then each remaining piece is normalized and encoded.
        var pieces = new List<(string Text, AddedToken? Token)>();
        var last = 0;
        foreach (var m in _addedTokenRegex.EnumerateMatches(text))
        {
            if (m.Index > last)
            {
                pieces.Add((text[last..m.Index], null));
            }
            var content = text.Substring(m.Index, m.Length);
            pieces.Add((content, _addedByContent[content]));
            last = m.Index + m.Length;
        }
        if (last < text.Length)
        {
            pieces.Add((text[last..], null));
        }
        for (var i = 0; i < pieces.Count; i++)
        {
            if (pieces[i].Token is not { } token)
            {
                continue;
            }
            if (token.LStrip && i > 0 && pieces[i - 1].Token is null)
            {
                pieces[i - 1] = (JsString.TrimEnd(pieces[i - 1].Text), null);
            }
            if (token.RStrip && i + 1 < pieces.Count && pieces[i + 1].Token is null)
            {
                pieces[i + 1] = (JsString.TrimStart(pieces[i + 1].Text), null);
            }
        }
        foreach (var (piece, token) in pieces)
        {
            if (token is not null)
            {
                ids.Add(token.Id);
            }
            else
            {
                EncodeOrdinary(piece, ids);
            }
        }
        return ids;
    }

    /// <summary>Decodes ids to text; invalid UTF-8 becomes U+FFFD. Ids without a token decode to nothing.</summary>
    public string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>(ids.Count * 4);
        foreach (var id in ids)
        {
            if (skipSpecialTokens && IsSpecial(id))
            {
                continue;
            }
            bytes.AddRange(TokenBytes(id));
        }
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    /// <summary>
    /// The raw bytes of a token: a vocabulary token's bytes, or an added token's UTF-8 text.
    /// Empty for an id in no token (a model's vocabulary may be padded past the tokenizer's).
    /// </summary>
    public ReadOnlySpan<byte> TokenBytes(int id)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        return id < _tokenBytes.Length && _tokenBytes[id] is { } bytes ? bytes : ReadOnlySpan<byte>.Empty;
    }

    /// <summary>The id of a token spelled as in tokenizer.json (byte-level characters, or an added token's text).</summary>
    public int? TokenToId(string token) => _tokenToId.TryGetValue(token, out var id) ? id : null;

    /// <summary>The token of an id as spelled in tokenizer.json, or null.</summary>
    public string? IdToToken(int id) => id >= 0 && id < _tokenStrings.Length ? _tokenStrings[id] : null;

    /// <summary>Whether the id is an added token marked special (skipped by skipSpecialTokens).</summary>
    public bool IsSpecial(int id) => id >= 0 && id < _special.Length && _special[id];

    /// <summary>Whether the id is one of the added tokens (special or not).</summary>
    public bool IsAddedToken(int id) => IdToToken(id) is { } s && _addedByContent.TryGetValue(s, out var t) && t.Id == id;

    /// <summary>A detokenizer for streaming the output of one sequence.</summary>
    public IncrementalDetokenizer CreateDetokenizer(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    private void EncodeOrdinary(string text, List<int> ids)
    {
        if (text.Length == 0)
        {
            return;
        }
        text = ReplaceLoneSurrogates(text); // first: ICU's normalizer rejects them
        if (_nfc)
        {
            text = text.Normalize(System.Text.NormalizationForm.FormC);
        }

        ids.AddRange(_bpe.EncodeToIds(text, considerPreTokenization: true, considerNormalization: false));
    }

    // UTF-8 has no lone surrogates: they become U+FFFD, as JavaScript's TextEncoder makes them
    // (TiktokenTokenizer would write their WTF-8 bytes instead).
    private static string ReplaceLoneSurrogates(string text)
    {
        StringBuilder? sb = null;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (!char.IsSurrogate(c))
            {
                sb?.Append(c);
                continue;
            }
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                sb?.Append(c).Append(text[i + 1]);
                i++;
                continue;
            }
            sb ??= new StringBuilder(text.Length).Append(text, 0, i);
            sb.Append('\uFFFD');
        }
        return sb?.ToString() ?? text;
    }

    private static JsonDocument ParseJson(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new CheckpointException(path, $"is not valid JSON: {e.Message}", e);
        }
        catch (IOException e)
        {
            throw new CheckpointException(path, $"cannot be read: {e.Message}", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new CheckpointException(path, $"cannot be read: {e.Message}", e);
        }
    }

    private static JsonElement? Property(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    private static string? StringProperty(JsonElement obj, string name) =>
        Property(obj, name) is { ValueKind: JsonValueKind.String } v ? v.GetString() : null;

    private static void CheckModel(string path, JsonElement model)
    {
        var type = StringProperty(model, "type");
        if (type is not null && type != "BPE")
        {
            throw new CheckpointException(path, $"tokenizer model is {type}; only byte-level BPE tokenizers are supported");
        }
        if (type is null && Property(model, "merges") is null)
        {
            throw new CheckpointException(path, "tokenizer model has no type and no merges; only byte-level BPE tokenizers are supported");
        }
        if (Property(model, "byte_fallback") is { ValueKind: JsonValueKind.True })
        {
            throw new CheckpointException(path, "BPE with byte_fallback (SentencePiece style) is not supported; only byte-level BPE is");
        }
        if (Property(model, "dropout") is { ValueKind: JsonValueKind.Number } d && d.GetDouble() > 0)
        {
            throw new CheckpointException(path, "BPE dropout is not supported");
        }
        foreach (var affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
        {
            if (!string.IsNullOrEmpty(StringProperty(model, affix)))
            {
                throw new CheckpointException(path, $"BPE {affix} is not supported");
            }
        }
    }

    private static bool CheckNormalizer(string path, JsonElement? normalizer)
    {
        if (normalizer is null)
        {
            return false;
        }
        var type = StringProperty(normalizer.Value, "type");
        if (type == "NFC")
        {
            return true;
        }
        if (type == "Sequence" && Property(normalizer.Value, "normalizers") is { ValueKind: JsonValueKind.Array } list)
        {
            var items = list.EnumerateArray().ToList();
            if (items.Count == 0)
            {
                return false;
            }
            if (items.Count == 1 && StringProperty(items[0], "type") == "NFC")
            {
                return true;
            }
        }
        throw new CheckpointException(path, $"normalizer {type ?? "(no type)"} is not supported (supported: none, NFC)");
    }

    private static string PreTokenizerPattern(string path, JsonElement? preTokenizer)
    {
        const string Supported = "supported: ByteLevel, or Sequence of one Split regex (Isolated) and ByteLevel without regex";
        if (preTokenizer is not { } p)
        {
            throw new CheckpointException(path, $"has no pre_tokenizer ({Supported})");
        }
        var type = StringProperty(p, "type");
        if (type == "ByteLevel")
        {
            CheckByteLevel(path, p, Supported);
            if (Property(p, "use_regex") is { ValueKind: JsonValueKind.False })
            {
                throw new CheckpointException(path, $"ByteLevel pre_tokenizer without a regex is not supported ({Supported})");
            }
            return Gpt2Pattern;
        }
        if (type == "Sequence" && Property(p, "pretokenizers") is { ValueKind: JsonValueKind.Array } list)
        {
            var items = list.EnumerateArray().ToList();
            if (items.Count == 2 && StringProperty(items[0], "type") == "Split" && StringProperty(items[1], "type") == "ByteLevel")
            {
                var split = items[0];
                CheckByteLevel(path, items[1], Supported);
                if (Property(items[1], "use_regex") is not { ValueKind: JsonValueKind.False })
                {
                    throw new CheckpointException(path, $"a Split followed by a ByteLevel pre_tokenizer with its own regex is not supported ({Supported})");
                }
                var behavior = StringProperty(split, "behavior");
                if (behavior != "Isolated" || Property(split, "invert") is { ValueKind: JsonValueKind.True })
                {
                    throw new CheckpointException(path, $"Split pre_tokenizer with behavior {behavior ?? "(none)"} is not supported ({Supported})");
                }
                if (Property(split, "pattern") is { } pattern && StringProperty(pattern, "Regex") is { } regex)
                {
                    return regex;
                }
                if (Property(split, "pattern") is { } literal && StringProperty(literal, "String") is { } s)
                {
                    return Regex.Escape(s);
                }
                throw new CheckpointException(path, "Split pre_tokenizer has no pattern");
            }
        }
        throw new CheckpointException(path, $"pre_tokenizer {type ?? "(no type)"} is not supported ({Supported})");
    }

    private static void CheckByteLevel(string path, JsonElement byteLevel, string supported)
    {
        if (Property(byteLevel, "add_prefix_space") is { ValueKind: JsonValueKind.True })
        {
            throw new CheckpointException(path, $"ByteLevel add_prefix_space is not supported ({supported})");
        }
    }

    private static void CheckDecoder(string path, JsonElement? decoder)
    {
        if (decoder is { } d && StringProperty(d, "type") is { } type && type != "ByteLevel")
        {
            throw new CheckpointException(path, $"decoder {type} is not supported (only ByteLevel)");
        }
    }

    private static Dictionary<string, int> ReadVocab(string path, JsonElement model)
    {
        if (Property(model, "vocab") is not { ValueKind: JsonValueKind.Object } vocab)
        {
            throw new CheckpointException(path, "BPE model has no \"vocab\" object");
        }
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        var seen = new HashSet<int>();
        foreach (var entry in vocab.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out var id) || id < 0)
            {
                throw new CheckpointException(path, $"vocabulary id of {JsonSerializer.Serialize(entry.Name)} is not a non-negative integer");
            }
            if (!seen.Add(id))
            {
                throw new CheckpointException(path, $"vocabulary id {id} is given to more than one token");
            }
            result[entry.Name] = id;
        }
        if (result.Count == 0)
        {
            throw new CheckpointException(path, "vocabulary is empty");
        }
        return result;
    }

    private static List<AddedToken> ReadAddedTokens(string path, JsonElement root)
    {
        var result = new List<AddedToken>();
        if (Property(root, "added_tokens") is not { } list)
        {
            return result;
        }
        if (list.ValueKind != JsonValueKind.Array)
        {
            throw new CheckpointException(path, "\"added_tokens\" is not an array");
        }
        foreach (var t in list.EnumerateArray())
        {
            var content = StringProperty(t, "content");
            if (string.IsNullOrEmpty(content) || Property(t, "id") is not { ValueKind: JsonValueKind.Number } idElement
                || !idElement.TryGetInt32(out var id) || id < 0)
            {
                throw new CheckpointException(path, "an added token lacks a non-empty \"content\" or a non-negative integer \"id\"");
            }
            result.Add(new AddedToken(
                id,
                content,
                Property(t, "special") is { ValueKind: JsonValueKind.True },
                Property(t, "lstrip") is { ValueKind: JsonValueKind.True },
                Property(t, "rstrip") is { ValueKind: JsonValueKind.True }));
        }
        result.Sort((a, b) => a.Id.CompareTo(b.Id));
        return result;
    }

    /// <summary>
    /// TiktokenTokenizer merges by the rank (id) of the merged token, Hugging Face by the order of
    /// the merges list. They agree when each merge makes a new token with a higher id than the
    /// merges before it and every longer token comes from a merge, as in tiktoken-derived vocabularies.
    /// </summary>
    private static void CheckMerges(string path, JsonElement model, Dictionary<string, int> vocab, List<AddedToken> added)
    {
        if (Property(model, "merges") is not { ValueKind: JsonValueKind.Array } merges)
        {
            throw new CheckpointException(path, "BPE model has no \"merges\" array");
        }
        var previous = -1;
        var made = new HashSet<int>();
        var index = 0;
        foreach (var merge in merges.EnumerateArray())
        {
            string? left = null, right = null;
            if (merge.ValueKind == JsonValueKind.String)
            {
                var s = merge.GetString()!;
                var space = s.IndexOf(' ', 1);
                if (space > 0)
                {
                    left = s[..space];
                    right = s[(space + 1)..];
                }
            }
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
                && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
            {
                left = merge[0].GetString();
                right = merge[1].GetString();
            }
            if (left is null || right is null)
            {
                throw new CheckpointException(path, $"merge {index} is malformed");
            }
            if (!vocab.TryGetValue(left + right, out var id) || id <= previous)
            {
                throw new CheckpointException(path,
                    $"merge {index} ({left} {right}) does not make a vocabulary token with a higher id than the merges before it; " +
                    "only BPE vocabularies ordered by merge rank are supported");
            }
            previous = id;
            made.Add(id);
            index++;
        }
        var addedIds = added.Select(t => t.Id).ToHashSet();
        foreach (var (token, id) in vocab)
        {
            if (token.Length > 1 && !made.Contains(id) && !addedIds.Contains(id))
            {
                throw new CheckpointException(path,
                    $"vocabulary token {JsonSerializer.Serialize(token)} (id {id}) is made by no merge; only BPE vocabularies ordered by merge rank are supported");
            }
        }
    }

    private sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip);

    private sealed record TokenizerConfig(
        string? EosToken, string? PadToken, string? BosToken, string? ChatTemplate, HashSet<string> AdditionalSpecialTokens)
    {
        public static TokenizerConfig Read(string path)
        {
            if (!File.Exists(path))
            {
                return new TokenizerConfig(null, null, null, null, []);
            }
            using var doc = ParseJson(path);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointException(path, "is not a JSON object");
            }
            return new TokenizerConfig(
                TokenText(path, root, "eos_token"),
                TokenText(path, root, "pad_token"),
                TokenText(path, root, "bos_token"),
                ChatTemplateText(path, root),
                AdditionalSpecial(path, root));
        }

        // A special token is written as its text or as an AddedToken object with "content".
        private static string? TokenText(string path, JsonElement root, string name) =>
            Property(root, name) is { } v ? TokenValue(path, v, name) : null;

        private static string TokenValue(string path, JsonElement value, string name) => value switch
        {
            { ValueKind: JsonValueKind.String } s => s.GetString()!,
            { ValueKind: JsonValueKind.Object } o when StringProperty(o, "content") is { } c => c,
            _ => throw new CheckpointException(path, $"\"{name}\" is neither a string nor an object with \"content\""),
        };

        private static HashSet<string> AdditionalSpecial(string path, JsonElement root)
        {
            var result = new HashSet<string>(StringComparer.Ordinal);
            if (Property(root, "additional_special_tokens") is { ValueKind: JsonValueKind.Array } list)
            {
                foreach (var item in list.EnumerateArray())
                {
                    result.Add(TokenValue(path, item, "additional_special_tokens"));
                }
            }
            return result;
        }

        private static string? ChatTemplateText(string path, JsonElement root)
        {
            switch (Property(root, "chat_template"))
            {
                case null:
                    return null;
                case { ValueKind: JsonValueKind.String } s:
                    return s.GetString();
                case { ValueKind: JsonValueKind.Array } list:
                    // Hugging Face also allows named templates; the "default" one applies to chat.
                    foreach (var item in list.EnumerateArray())
                    {
                        if (StringProperty(item, "name") == "default")
                        {
                            return StringProperty(item, "template")
                                ?? throw new CheckpointException(path, "chat_template \"default\" has no \"template\" string");
                        }
                    }
                    throw new CheckpointException(path, "chat_template is a list with no template named \"default\"");
                default:
                    throw new CheckpointException(path, "chat_template is neither a string nor a list of named templates");
            }
        }
    }
}
