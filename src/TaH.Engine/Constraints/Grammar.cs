namespace TaH.Engine.Constraints;

/// <summary>What returning from a called rule does to the caller's frame.</summary>
internal enum Effect : byte
{
    None,

    /// <summary>Counts the item just read (arrays: minItems/maxItems).</summary>
    Increment,

    /// <summary>Records the key just read, so a later key of the same object must differ.</summary>
    AddKey,
}

/// <summary>A condition on the frame's count for taking a byte edge.</summary>
internal enum Guard : byte
{
    None,

    /// <summary>count &lt; the rule's maximum (room for another item).</summary>
    BelowMax,

    /// <summary>count &gt;= the rule's minimum (enough items to close).</summary>
    AtLeastMin,
}

internal readonly record struct ByteEdge(byte Lo, byte Hi, Guard Guard, int Target);

internal readonly record struct CallEdge(int Rule, Effect Effect, int Target);

internal readonly record struct TokenEdge(int Token, int Target);

internal abstract class Rule(string name)
{
    public string Name { get; } = name;
}

/// <summary>
/// A rule as a deterministic automaton over bytes, with edges that call other rules (pushing a
/// frame) and edges that take one added token by id. Built by <see cref="Nfa"/>, trimmed: every
/// state can still reach a final state.
/// </summary>
internal sealed class AutomatonRule(string name) : Rule(name)
{
    public int Start { get; init; }

    public required bool[] Final { get; init; }

    public required ByteEdge[][] Bytes { get; init; }

    public required CallEdge[][] Calls { get; init; }

    public required TokenEdge[][] Tokens { get; init; }

    /// <summary>Bounds of the frame's count for <see cref="Guard"/>s and <see cref="Effect.Increment"/>.</summary>
    public int MinCount { get; init; }

    public int MaxCount { get; init; } = int.MaxValue;

    /// <summary>
    /// Set on a rule without calls that every grammar builds the same way (a number, a format, an
    /// integer range): its token classes depend only on the vocabulary, which keeps them.
    /// </summary>
    public string? CacheKey { get; init; }

    public int States => Final.Length;

    /// <summary>Whether a frame in this state can take a byte or a token (else it is only a call or an end).</summary>
    public bool Consumes(int state) => Bytes[state].Length > 0 || Tokens[state].Length > 0;
}

/// <summary>
/// A JSON string (quotes included) with a length in code points between <see cref="Min"/> and
/// <see cref="Max"/>. Its states are <see cref="StringAutomaton"/>'s. A key string (of an object
/// with free keys) has no escapes, keeps the bytes it read, and must differ from the object's keys
/// so far and from <see cref="Excluded"/> (the object's listed properties).
/// </summary>
internal sealed class StringRule(string name, int min, int max, bool key, IReadOnlyList<byte[]> excluded) : Rule(name)
{
    public int Min { get; } = min;

    /// <summary><see cref="int.MaxValue"/> when unbounded.</summary>
    public int Max { get; } = max;

    public bool Key { get; } = key;

    public IReadOnlyList<byte[]> Excluded { get; } = excluded;

    /// <summary>Unbounded strings do not count, so a frame inside one stays the same from token to token.</summary>
    public bool Counts => Min > 0 || Max != int.MaxValue;
}

/// <summary>Rules by id; rule 0 is the root.</summary>
internal sealed class Grammar(IReadOnlyList<Rule> rules)
{
    public IReadOnlyList<Rule> Rules { get; } = rules;

    /// <summary>Total automaton states (a size measure for limits and reports).</summary>
    public int StateCount => Rules.Sum(r => r is AutomatonRule a ? a.States : StringAutomaton.States);
}

/// <summary>
/// One frame of a matcher's stack: a rule, its state and count, and what it keeps (a key
/// string's bytes so far, an object's keys so far). Immutable and compared by value, so stacks are
/// shared between configurations, matchers and threads.
/// </summary>
internal sealed class Frame : IEquatable<Frame>
{
    /// <summary>The parent of the frame a precomputation starts from: popping into it means "depends on the context".</summary>
    public static readonly Frame Context = new(-1, 0, 0, null, Effect.None, null, false);

    public Frame(int rule, int state, int count, object? data, Effect effect, Frame? parent, bool symbolic)
    {
        Rule = rule;
        State = state;
        Count = count;
        Data = data;
        Effect = effect;
        Parent = parent;
        Symbolic = symbolic;
        Depth = parent is null ? 0 : parent.Depth + 1;
        Hash = HashCode.Combine(rule, state, count, data?.GetHashCode() ?? 0, effect, parent?.Hash ?? 0, symbolic);
    }

    public int Rule { get; }

    public int State { get; }

    public int Count { get; }

    /// <summary>A <see cref="ByteChain"/> (key bytes) or a <see cref="KeyChain"/> (an object's keys).</summary>
    public object? Data { get; }

    /// <summary>What popping this frame does to its parent.</summary>
    public Effect Effect { get; }

    /// <summary>The caller, at the state it returns to; null at the root.</summary>
    public Frame? Parent { get; }

    /// <summary>
    /// The frame a precomputation starts from, whose count and keys are unknown: anything that
    /// reads them makes a token context-dependent.
    /// </summary>
    public bool Symbolic { get; }

    public int Depth { get; }

    public int Hash { get; }

    public Frame With(int state, int count, object? data) => new(Rule, state, count, data, Effect, Parent, Symbolic);

    /// <summary>
    /// This stack with every object's keys replaced by one unknown key: what a check made on it
    /// holds for any keys, except where a key decides (then the check says so, and is redone on
    /// the real stack). Lets checks be shared between objects with different keys.
    /// </summary>
    public static Frame? Abstract(Frame? f)
    {
        var chain = new List<Frame>();
        bool any = false;
        for (var x = f; x is not null && !ReferenceEquals(x, Context); x = x.Parent)
        {
            chain.Add(x);
            any |= x.Data is KeyChain;
        }

        if (!any)
        {
            return f;
        }

        var parent = chain[^1].Parent;
        for (int i = chain.Count - 1; i >= 0; i--)
        {
            var x = chain[i];
            parent = new Frame(x.Rule, x.State, x.Count, x.Data is KeyChain ? KeyChain.Unknown : x.Data, x.Effect, parent, x.Symbolic);
        }

        return parent;
    }

    public override int GetHashCode() => Hash;

    public override bool Equals(object? obj) => obj is Frame f && Equals(f);

    public bool Equals(Frame? other)
    {
        var a = this;
        var b = other;
        while (true)
        {
            if (ReferenceEquals(a, b))
            {
                return true;
            }

            if (a is null || b is null || a.Hash != b.Hash || a.Rule != b.Rule || a.State != b.State || a.Count != b.Count
                || a.Effect != b.Effect || a.Symbolic != b.Symbolic || a.Depth != b.Depth || !Equals(a.Data, b.Data))
            {
                return false;
            }

            a = a.Parent;
            b = b.Parent;
        }
    }
}

/// <summary>The bytes of a key read so far, newest first.</summary>
internal sealed class ByteChain : IEquatable<ByteChain>
{
    private ByteChain(byte value, ByteChain? previous)
    {
        Value = value;
        Previous = previous;
        Length = (previous?.Length ?? 0) + 1;
        Hash = HashCode.Combine(value, previous?.Hash ?? 17);
    }

    public byte Value { get; }

    public ByteChain? Previous { get; }

    public int Length { get; }

    public int Hash { get; }

    public static ByteChain Add(ByteChain? chain, byte value) => new(value, chain);

    public static byte[] ToArray(ByteChain? chain)
    {
        var result = new byte[chain?.Length ?? 0];
        for (var c = chain; c is not null; c = c.Previous)
        {
            result[c.Length - 1] = c.Value;
        }

        return result;
    }

    public override int GetHashCode() => Hash;

    public override bool Equals(object? obj) => obj is ByteChain c && Equals(c);

    public bool Equals(ByteChain? other)
    {
        var a = this;
        var b = other;
        while (!ReferenceEquals(a, b))
        {
            if (a is null || b is null || a.Hash != b.Hash || a.Length != b.Length || a.Value != b.Value)
            {
                return false;
            }

            a = a.Previous;
            b = b.Previous;
        }

        return true;
    }
}

/// <summary>The keys an object has read so far; a null key stands for one not known (in a precomputation).</summary>
internal sealed class KeyChain : IEquatable<KeyChain>
{
    private KeyChain(byte[]? key, KeyChain? previous)
    {
        Key = key;
        Previous = previous;
        var h = new HashCode();
        if (key is null)
        {
            h.Add(-1);
        }
        else
        {
            h.AddBytes(key);
        }

        h.Add(previous?.Hash ?? 31);
        Hash = h.ToHashCode();
    }

    public byte[]? Key { get; }

    public KeyChain? Previous { get; }

    public int Hash { get; }

    /// <summary>Some keys, none known.</summary>
    public static KeyChain Unknown { get; } = new(null, null);

    public static KeyChain Add(KeyChain? chain, byte[]? key) => new(key, chain);

    /// <summary>True when the key is there, false when not, null when only an unknown key could be it.</summary>
    public static bool? Contains(KeyChain? chain, ReadOnlySpan<byte> key)
    {
        bool unknown = false;
        for (var c = chain; c is not null; c = c.Previous)
        {
            if (c.Key is null)
            {
                unknown = true;
            }
            else if (key.SequenceEqual(c.Key))
            {
                return true;
            }
        }

        return unknown ? null : false;
    }

    public override int GetHashCode() => Hash;

    public override bool Equals(object? obj) => obj is KeyChain c && Equals(c);

    public bool Equals(KeyChain? other)
    {
        var a = this;
        var b = other;
        while (!ReferenceEquals(a, b))
        {
            if (a is null || b is null || a.Hash != b.Hash || !a.Key.AsSpan().SequenceEqual(b.Key) || (a.Key is null) != (b.Key is null))
            {
                return false;
            }

            a = a.Previous;
            b = b.Previous;
        }

        return true;
    }
}
