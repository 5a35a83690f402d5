using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace TaH.Engine.Kv;

/// <summary>
/// The content hash of a full block of tokens, chained through the blocks before it, so equal
/// hashes mean equal prefixes.
/// </summary>
public readonly record struct BlockHash(ulong High, ulong Low)
{
    public static BlockHash Of(BlockHash parent, ReadOnlySpan<int> tokens)
    {
        Span<byte> input = stackalloc byte[16 + (tokens.Length * sizeof(int))];
        BinaryPrimitives.WriteUInt64LittleEndian(input, parent.High);
        BinaryPrimitives.WriteUInt64LittleEndian(input[8..], parent.Low);
        MemoryMarshal.AsBytes(tokens).CopyTo(input[16..]);
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(input, digest);
        return new BlockHash(BinaryPrimitives.ReadUInt64LittleEndian(digest), BinaryPrimitives.ReadUInt64LittleEndian(digest[8..]));
    }
}

/// <summary>
/// The deeper entries of a cached prefix: how many there are, where (the blocks holding entries
/// 0..Count-1, the last possibly part-filled) and at which positions.
/// </summary>
internal sealed record DeepPrefix(int Depth, int Count, int[] Blocks, long[] Generations, int[] Positions);

/// <summary>
/// Prefix caching over both depths. Depth-1 keys and values depend on the tokens only, so a full
/// depth-1 block is found by its chained token hash. Deeper entries also depend on which
/// positions iterated, which the policy decides, so they are found by (hash, policy): for the
/// prefix ending at a depth-1 block, the entries of every position in it. Entries point at
/// blocks by (index, generation) and go stale when the pool hands the block out again.
/// </summary>
internal sealed class PrefixCache
{
    private readonly KvCache _pool;
    private readonly Dictionary<BlockHash, (int Block, long Generation)> _depth1 = [];
    private readonly Dictionary<int, BlockHash> _depth1ByBlock = [];
    private readonly Dictionary<(BlockHash Hash, string Policy, int Depth), DeepPrefix> _deep = [];
    private readonly Dictionary<int, HashSet<(BlockHash, string, int)>> _deepByBlock = [];
    private readonly Dictionary<BlockHash, HashSet<(BlockHash, string, int)>> _deepByHash = [];
    private readonly Dictionary<int, int> _registrations = [];

    public PrefixCache(KvCache pool) => _pool = pool;

    /// <summary>Whether some entry points at the block, so it is worth keeping when unused.</summary>
    public bool Knows(int block) => _registrations.ContainsKey(block);

    /// <summary>
    /// The longest cached prefix of <paramref name="hashes"/>: its depth-1 blocks and, for a
    /// policy that iterates, the deeper entries of exactly those positions.
    /// </summary>
    public (int[] Depth1, DeepPrefix[] Deeper) Lookup(IReadOnlyList<BlockHash> hashes, string? policy, int maxDepth)
    {
        var blocks = new List<int>();
        foreach (var hash in hashes)
        {
            if (!_depth1.TryGetValue(hash, out var entry) || _pool.Generation(entry.Block) != entry.Generation)
            {
                break;
            }

            blocks.Add(entry.Block);
        }

        if (policy is null || maxDepth < 2)
        {
            return ([.. blocks], []);
        }

        // Deeper entries must cover the whole prefix: shorten it until they do.
        for (int k = blocks.Count; k > 0; k--)
        {
            var deeper = new DeepPrefix[maxDepth - 1];
            bool complete = true;
            for (int depth = 2; depth <= maxDepth && complete; depth++)
            {
                complete = _deep.TryGetValue((hashes[k - 1], policy, depth), out var deep) && IsValid(deep);
                deeper[depth - 2] = deep!;
            }

            if (complete)
            {
                return ([.. blocks.Take(k)], deeper);
            }
        }

        return ([], []);
    }

    public void RegisterDepth1(BlockHash hash, int block)
    {
        if (_depth1.TryGetValue(hash, out var existing) && _pool.Generation(existing.Block) == existing.Generation)
        {
            return;
        }

        Remove(hash);
        _depth1[hash] = (block, _pool.Generation(block));
        _depth1ByBlock[block] = hash;
        Count(block, +1);
    }

    public void RegisterDeep(BlockHash hash, string policy, int depth, int count, IReadOnlyList<int> blocks, IReadOnlyList<int> positions)
    {
        var key = (hash, policy, depth);
        if (_deep.TryGetValue(key, out var existing) && IsValid(existing))
        {
            return;
        }

        RemoveDeep(key);
        int used = _pool.Budget.BlocksFor(count);
        var deep = new DeepPrefix(depth, count, [.. blocks.Take(used)], [.. blocks.Take(used).Select(_pool.Generation)], [.. positions.Take(count)]);
        _deep[key] = deep;
        (_deepByHash.TryGetValue(hash, out var sameHash) ? sameHash : _deepByHash[hash] = []).Add(key);
        foreach (int block in deep.Blocks)
        {
            (_deepByBlock.TryGetValue(block, out var keys) ? keys : _deepByBlock[block] = []).Add(key);
            Count(block, +1);
        }
    }

    /// <summary>The pool is handing the block out again: drop everything that pointed at it.</summary>
    public void Forget(int block)
    {
        if (_depth1ByBlock.TryGetValue(block, out var hash))
        {
            Remove(hash);
        }

        if (_deepByBlock.TryGetValue(block, out var keys))
        {
            foreach (var key in keys.ToList())
            {
                RemoveDeep(key);
            }
        }
    }

    private bool IsValid(DeepPrefix deep)
    {
        for (int i = 0; i < deep.Blocks.Length; i++)
        {
            if (_pool.Generation(deep.Blocks[i]) != deep.Generations[i])
            {
                return false;
            }
        }

        return true;
    }

    private void Remove(BlockHash hash)
    {
        if (!_depth1.Remove(hash, out var entry))
        {
            return;
        }

        _depth1ByBlock.Remove(entry.Block);
        Count(entry.Block, -1);
        if (_deepByHash.TryGetValue(hash, out var keys))
        {
            foreach (var key in keys.ToList())
            {
                RemoveDeep(key);
            }
        }
    }

    private void RemoveDeep((BlockHash Hash, string, int) key)
    {
        if (!_deep.Remove(key, out var deep))
        {
            return;
        }

        if (_deepByHash.TryGetValue(key.Hash, out var sameHash) && sameHash.Remove(key) && sameHash.Count == 0)
        {
            _deepByHash.Remove(key.Hash);
        }

        foreach (int block in deep.Blocks)
        {
            if (_deepByBlock.TryGetValue(block, out var keys) && keys.Remove(key) && keys.Count == 0)
            {
                _deepByBlock.Remove(block);
            }

            Count(block, -1);
        }
    }

    private void Count(int block, int delta)
    {
        int now = _registrations.GetValueOrDefault(block) + delta;
        if (now > 0)
        {
            _registrations[block] = now;
        }
        else
        {
            _registrations.Remove(block);
        }
    }
}
