using System.Collections.Concurrent;
using TaH.Engine.Tokenization;

namespace TaH.Engine.Constraints;

/// <summary>
/// The tokens of one tokenizer as byte strings, indexed once for constrained decoding: a byte
/// trie over every ordinary token (numbered in preorder, so a node's subtree is a range of node
/// ids) and the added tokens by content. Added tokens are left out of the trie: a grammar allows
/// one only by its id (a tool-call tag, a think tag, EOS), never as the bytes it spells, so that
/// e.g. <c>&lt;|im_end|&gt;</c> can never be written inside a JSON string. Immutable, shared.
/// </summary>
public sealed class TokenVocabulary
{
    private readonly byte[][] _bytes;
    private readonly Dictionary<string, int> _added;
    private readonly bool[] _isAdded;
    private readonly Lazy<StringTables> _strings;
    private readonly Lazy<StringTables> _keys;

    private TokenVocabulary(int size, byte[][] bytes, Dictionary<string, int> added, TrieArrays trie)
    {
        Size = size;
        _bytes = bytes;
        _added = added;
        _isAdded = new bool[bytes.Length];
        foreach (int id in added.Values)
        {
            _isAdded[id] = true;
        }

        ChildStart = trie.ChildStart;
        ChildByte = trie.ChildByte;
        ChildNode = trie.ChildNode;
        NodeToken = trie.NodeToken;
        SubtreeEnd = trie.SubtreeEnd;
        ByteTokens = trie.Tokens;
        _strings = new Lazy<StringTables>(() => new StringTables(this, key: false));
        _keys = new Lazy<StringTables>(() => new StringTables(this, key: true));
    }

    /// <summary>The number of logits a mask covers (the model's vocabulary, which may pass the tokenizer's).</summary>
    public int Size { get; }

    /// <summary>Tokens the tokenizer knows (ids below this may have bytes).</summary>
    public int TokenCount => _bytes.Length;

    /// <summary>Per trie node: where its children start in <see cref="ChildByte"/>/<see cref="ChildNode"/> (node + 1 ends them).</summary>
    internal int[] ChildStart { get; }

    internal byte[] ChildByte { get; }

    internal int[] ChildNode { get; }

    /// <summary>The token whose bytes end at a node, or -1.</summary>
    internal int[] NodeToken { get; }

    /// <summary>One past the last node of a node's subtree (preorder numbering).</summary>
    internal int[] SubtreeEnd { get; }

    /// <summary>Every trie token, sorted by bytes.</summary>
    internal int[] ByteTokens { get; }

    internal const int Root = 0;

    private const int MaxSharedRules = 1024;

    private readonly ConcurrentDictionary<string, Lazy<StateEntry[]>> _ruleEntries = new(StringComparer.Ordinal);

    /// <summary>The token classes of a call-free rule every grammar builds alike (<see cref="AutomatonRule.CacheKey"/>), made once.</summary>
    internal StateEntry[] RuleEntries(string key, Func<StateEntry[]> compute)
    {
        if (_ruleEntries.Count >= MaxSharedRules)
        {
            _ruleEntries.Clear();
        }

        return _ruleEntries.GetOrAdd(key, _ => new Lazy<StateEntry[]>(compute)).Value;
    }

    /// <summary>What each token does inside a string (value strings, or key strings without escapes), built on first use.</summary>
    internal StringTables Strings(bool key) => key ? _keys.Value : _strings.Value;

    /// <summary>Builds the tables nearly every JSON constraint uses (string tokens), so the first request does not wait for them.</summary>
    public void WarmUp()
    {
        foreach (bool key in new[] { false, true })
        {
            _ = Strings(key)[StringAutomaton.Q];
            _ = Strings(key)[StringAutomaton.B].WithNeedAtMost(0); // and its bitsets by length left
        }
    }

    /// <summary>The bytes of a token (empty for an id with none).</summary>
    public ReadOnlySpan<byte> Bytes(int id) => (uint)id < (uint)_bytes.Length ? _bytes[id] : [];

    /// <summary>The id of an added token by its text, or null.</summary>
    public int? AddedToken(string content) => _added.TryGetValue(content, out int id) ? id : null;

    public bool IsAdded(int id) => (uint)id < (uint)_isAdded.Length && _isAdded[id];

    /// <summary>The child of a trie node by byte, or -1.</summary>
    internal int Child(int node, byte b)
    {
        int lo = ChildStart[node], hi = ChildStart[node + 1] - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            byte m = ChildByte[mid];
            if (m == b)
            {
                return ChildNode[mid];
            }

            if (m < b)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return -1;
    }

    /// <summary>Indexes a tokenizer for a model whose logits cover <paramref name="modelVocabSize"/> ids.</summary>
    public static TokenVocabulary Create(TextTokenizer tokenizer, int modelVocabSize)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        int count = Math.Min(tokenizer.VocabSize, modelVocabSize);
        var bytes = new byte[count][];
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        var ordinary = new List<int>(count);
        for (int id = 0; id < count; id++)
        {
            bytes[id] = tokenizer.TokenBytes(id).ToArray();
            if (tokenizer.IsAddedToken(id))
            {
                added[tokenizer.IdToToken(id)!] = id;
            }
            else if (bytes[id].Length > 0)
            {
                ordinary.Add(id);
            }
        }

        return new TokenVocabulary(modelVocabSize, bytes, added, BuildTrie(bytes, ordinary));
    }

    private sealed record TrieArrays(int[] ChildStart, byte[] ChildByte, int[] ChildNode, int[] NodeToken, int[] SubtreeEnd, int[] Tokens);

    private static TrieArrays BuildTrie(byte[][] bytes, List<int> ids)
    {
        ids.Sort((a, b) => bytes[a].AsSpan().SequenceCompareTo(bytes[b]));
        var lcp = new int[ids.Count];
        for (int i = 1; i < ids.Count; i++)
        {
            lcp[i] = bytes[ids[i - 1]].AsSpan().CommonPrefixLength(bytes[ids[i]]);
        }

        // Sorted order is preorder: each token adds the nodes past its common prefix with the last one.
        var parent = new List<int> { -1 };
        var edgeByte = new List<byte> { 0 };
        var token = new List<int> { -1 };
        var path = new List<int> { Root }; // path[d]: the node at depth d of the last token
        for (int i = 0; i < ids.Count; i++)
        {
            var b = bytes[ids[i]];
            int keep = lcp[i];
            path.RemoveRange(keep + 1, path.Count - keep - 1);
            for (int d = keep; d < b.Length; d++)
            {
                int node = parent.Count;
                parent.Add(path[d]);
                edgeByte.Add(b[d]);
                token.Add(-1);
                path.Add(node);
            }

            token[path[b.Length]] = ids[i];
        }

        int nodes = parent.Count;
        var childCount = new int[nodes + 1];
        for (int n = 1; n < nodes; n++)
        {
            childCount[parent[n]]++;
        }

        var childStart = new int[nodes + 1];
        for (int n = 0; n < nodes; n++)
        {
            childStart[n + 1] = childStart[n] + childCount[n];
        }

        var fill = (int[])childStart.Clone();
        var childByte = new byte[nodes - 1];
        var childNode = new int[nodes - 1];
        for (int n = 1; n < nodes; n++)
        {
            int slot = fill[parent[n]]++; // children come in byte order, as nodes do
            childByte[slot] = edgeByte[n];
            childNode[slot] = n;
        }

        var subtreeEnd = new int[nodes];
        for (int n = nodes - 1; n >= 0; n--)
        {
            subtreeEnd[n] = childStart[n + 1] > childStart[n] ? subtreeEnd[childNode[childStart[n + 1] - 1]] : n + 1;
        }

        return new TrieArrays(childStart, childByte, childNode, [.. token], subtreeEnd, [.. ids]);
    }
}
