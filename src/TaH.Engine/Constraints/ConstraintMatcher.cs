using System.Numerics.Tensors;

namespace TaH.Engine.Constraints;

/// <summary>
/// One sequence's position in a <see cref="Constraint"/>: the set of stacks the output so far can
/// be in (several while it is ambiguous, e.g. a number that may go on or end). Gives the mask of
/// tokens allowed next and advances on the token chosen. Not thread-safe; <see cref="Clone"/> for
/// a parallel sample.
/// </summary>
public sealed class ConstraintMatcher
{

    private readonly Constraint _constraint;
    private readonly int[] _terminators;
    private readonly Stepper _stepper;
    private readonly TokenVocabulary _vocabulary;
    private readonly WalkScratch _scratch = new();
    private readonly FrameSet _a = new();
    private readonly FrameSet _b = new();
    private ulong[]? _words;
    private Frame[] _frames;
    private bool _accepting;
    private bool _ended;
    private bool _cutShort;
    private TokenMask? _lastMask;
    private Frame[]? _lastFrames;
    private bool _lastAccepting;

    internal ConstraintMatcher(Constraint constraint, int[] terminators)
    {
        if (terminators.Length == 0)
        {
            throw new ArgumentException("a constrained sequence needs at least one token that ends it (an EOS or stop token)", nameof(terminators));
        }

        _constraint = constraint;
        _terminators = terminators;
        _stepper = constraint.Stepper;
        _vocabulary = constraint.Vocabulary;
        var flags = default(StepFlags);
        _a.Clear();
        _stepper.Close(_stepper.Push(0, Effect.None, null), _a, ref flags);
        _frames = _a.ToArray();
        _accepting = flags.Accepting;
    }

    private ConstraintMatcher(ConstraintMatcher other)
    {
        _constraint = other._constraint;
        _terminators = other._terminators;
        _stepper = other._stepper;
        _vocabulary = other._vocabulary;
        _frames = other._frames;
        _accepting = other._accepting;
        _ended = other._ended;
        _cutShort = other._cutShort;
    }

    public Constraint Constraint => _constraint;

    /// <summary>The output so far is complete: an end token is allowed.</summary>
    public bool IsComplete => _accepting || _ended;

    /// <summary>An end token was accepted.</summary>
    public bool IsEnded => _ended;

    /// <summary>
    /// The output ended unfinished: it nested deeper than a stack may hold, so nothing could follow
    /// but the end (as when max_tokens cuts it short).
    /// </summary>
    public bool IsCutShort => _cutShort && _ended;

    public ConstraintMatcher Clone() => new(this);

    /// <summary>
    /// The tokens that keep the output valid: those some stack reads through, and the end tokens
    /// once the output is complete. The same mask object comes back while the stacks stay the
    /// same (inside an unbounded string, say); it is never changed after it is returned.
    /// </summary>
    public TokenMask ComputeMask()
    {
        if (_lastMask is not null && _lastAccepting == _accepting && SameFrames(_lastFrames!, _frames))
        {
            return _lastMask;
        }

        var mask = new TokenMask(_vocabulary.Size);
        if (!_ended)
        {
            foreach (var f in _frames)
            {
                AddContextFree(mask, f);
            }

            foreach (var f in _frames)
            {
                AddUncertain(mask, f);
            }
        }

        // Empty only where a stack ran into the depth limit: the end cuts the output short.
        bool stuck = !_accepting && !_ended && mask.Count == 0;
        foreach (int t in _terminators)
        {
            if (t < mask.Size)
            {
                if (_accepting || _ended || stuck)
                {
                    mask.Set(t);
                }
                else
                {
                    mask.Clear(t); // a stop token the grammar could write would cut the output short
                }
            }
        }

        _lastMask = mask;
        _lastFrames = _frames;
        _lastAccepting = _accepting;
        return mask;
    }

    /// <summary>
    /// Advances on <paramref name="token"/>; false (and nothing changes) when the token is not
    /// allowed here.
    /// </summary>
    public bool Accept(int token)
    {
        if (Array.BinarySearch(_terminators, token) >= 0)
        {
            if (!_accepting && !_ended)
            {
                if (!ComputeMask().IsAllowed(token))
                {
                    return false;
                }

                _cutShort = true; // stuck at the depth limit
            }

            _ended = true;
            return true;
        }

        if (_ended)
        {
            return false;
        }

        // A token that runs into the depth limit is taken (the mask, made without the limit in view,
        // allowed it), and leaves nothing to follow but the end: the output is cut short there.
        var flags = default(StepFlags);
        bool limited = false;
        var from = _a;
        from.Clear();
        foreach (var f in _frames)
        {
            from.Add(f);
        }

        var to = _b;
        to.Clear();
        if (_vocabulary.IsAdded(token))
        {
            for (int i = 0; i < from.Count; i++)
            {
                _stepper.StepToken(from[i], token, to, ref flags);
            }
        }
        else
        {
            var bytes = _vocabulary.Bytes(token);
            if (bytes.IsEmpty)
            {
                return false;
            }

            for (int d = 0; d < bytes.Length; d++)
            {
                to.Clear();
                flags = default;
                for (int i = 0; i < from.Count; i++)
                {
                    _stepper.StepByte(from[i], bytes[d], to, ref flags);
                }

                limited |= flags.DepthLimited;
                if (to.Count == 0 && (d < bytes.Length - 1 || !flags.Accepting))
                {
                    if (limited)
                    {
                        _frames = [];
                        _accepting = false;
                        return true;
                    }

                    return false;
                }

                (from, to) = (to, from);
            }

            (from, to) = (to, from);
        }

        limited |= flags.DepthLimited;
        if (to.Count == 0 && !flags.Accepting && !limited)
        {
            return false;
        }

        _frames = to.ToArray();
        _accepting = flags.Accepting;
        return true;
    }

    private static bool SameFrames(Frame[] a, Frame[] b)
    {
        if (ReferenceEquals(a, b))
        {
            return true;
        }

        if (a.Length != b.Length)
        {
            return false;
        }

        for (int i = 0; i < a.Length; i++)
        {
            if (!a[i].Equals(b[i]))
            {
                return false;
            }
        }

        return true;
    }

    private void AddContextFree(TokenMask mask, Frame f)
    {
        var bits = mask.Bits;
        if (_stepper.RuleOf(f) is StringRule s)
        {
            AddStringBody(bits, f, s);
            return;
        }

        var entry = _constraint.Entries[f.Rule][f.State];
        if (entry.AcceptedBits is { } accepted)
        {
            TokenMask.Or(bits, accepted);
        }
        else
        {
            foreach (int id in entry.Accepted)
            {
                bits[id >> 6] |= 1UL << id;
            }
        }

        foreach (int id in entry.Tokens)
        {
            bits[id >> 6] |= 1UL << id;
        }
    }

    private void AddStringBody(ulong[] bits, Frame f, StringRule s)
    {
        var table = _vocabulary.Strings(s.Key)[StringTables.TableIndex(f.State, s)];
        int cap = s.Max == int.MaxValue ? int.MaxValue : s.Max - f.Count;
        var body = table.WithNeedAtMost(cap);
        int remaining = Remaining(f, s);
        if (remaining > 0)
        {
            var words = _words ??= new ulong[bits.Length];
            TensorPrimitives.BitwiseAnd<ulong>(body, table.WithRunAtLeast(remaining), words);
            TokenMask.Or(bits, words);
        }
        else
        {
            TokenMask.Or(bits, body);
        }
    }

    /// <summary>Characters still needed to reach minLength, from the states before it is reached.</summary>
    private static int Remaining(Frame f, StringRule s) =>
        f.State == StringAutomaton.P || (f.State == StringAutomaton.Q && s.Min > 0) ? s.Min - f.Count : 0;

    private void AddUncertain(TokenMask mask, Frame f)
    {
        if (_stepper.RuleOf(f) is StringRule s)
        {
            AddStringClosings(mask, f, s);
            return;
        }

        var entry = _constraint.Entries[f.Rule][f.State];
        var ids = entry.Uncertain;
        if (ids.Length == 0)
        {
            return;
        }

        var shared = Frame.Abstract(f)!;
        if (!_constraint.Uncertain.TryGetValue(shared, out var memo))
        {
            var start = _a;
            start.Clear();
            start.Add(shared);
            List<int> through = [], unsure = [];
            Walks.Exact(_stepper, _scratch, start, false, ids.Length, i => _vocabulary.Bytes(ids[i]), entry.UncertainLcp, _ => false, i => through.Add(ids[i]), i => unsure.Add(ids[i]));
            memo = Remember(_constraint.Uncertain, shared, ([.. through], [.. unsure]));
        }

        foreach (int id in memo.Through)
        {
            mask.Set(id);
        }

        Recheck(mask, f, memo.Unsure);
    }

    /// <summary>Runs tokens whole from the real frame (those a key decides).</summary>
    private void Recheck(TokenMask mask, Frame f, int[] tokens)
    {
        if (tokens.Length == 0)
        {
            return;
        }

        var start = _a;
        start.Clear();
        start.Add(f);
        Walks.Exact(_stepper, _scratch, start, false, tokens.Length, k => _vocabulary.Bytes(tokens[k]), new int[tokens.Length], k => mask.IsAllowed(tokens[k]), k => mask.Set(tokens[k]));
    }

    private static TValue Remember<TKey, TValue>(System.Collections.Concurrent.ConcurrentDictionary<TKey, TValue> memo, TKey key, TValue value)
        where TKey : notnull
    {
        if (memo.Count >= Constraint.MaxMemo)
        {
            memo.Clear();
        }

        return memo.GetOrAdd(key, value);
    }

    private void AddStringClosings(TokenMask mask, Frame f, StringRule s)
    {
        int index = StringTables.TableIndex(f.State, s);
        var table = _vocabulary.Strings(s.Key)[index];
        var ids = table.ClosingIds;
        if (ids.Length == 0)
        {
            return;
        }

        // What follows the quote depends only on the caller (for a key, on the object with one
        // more key, whose bytes are checked below), the same all through a string: kept.
        var parent = Frame.Abstract(f.Parent);
        var memoKey = (index, s.Key, parent, f.Effect);
        if (!_constraint.Closings.TryGetValue(memoKey, out var memo))
        {
            var context = _a;
            context.Clear();
            var flags = default(StepFlags);
            if (s.Key)
            {
                _stepper.Close(parent!.With(parent.State, parent.Count, KeyChain.Add(parent.Data as KeyChain, null)), context, ref flags);
            }
            else
            {
                _stepper.Close(new Frame(f.Rule, StringAutomaton.Closed, f.Count, f.Data, f.Effect, parent, false), context, ref flags);
            }

            List<int> through = [], unsure = [];
            Walks.Exact(_stepper, _scratch, context, flags.Accepting, ids.Length, i => _vocabulary.Bytes(ids[i])[table.ClosingSuffix[i]..], table.ClosingLcp, _ => false, through.Add, unsure.Add);
            memo = Remember(_constraint.Closings, memoKey, ([.. through], [.. unsure]));
        }

        int cap = s.Max == int.MaxValue ? int.MaxValue : s.Max - f.Count;
        int remaining = Remaining(f, s);
        byte[]? read = s.Key ? ByteChain.ToArray(f.Data as ByteChain) : null;
        foreach (int i in memo.Through)
        {
            if (table.ClosingNeed[i] <= cap && (remaining <= 0 || table.ClosingRun[i] >= remaining) && (read is null || NewKey(read, i)))
            {
                mask.Set(ids[i]);
            }
        }

        // Only a key's bytes could decide these (a second key inside one token): run them whole.
        Recheck(mask, f, [.. memo.Unsure.Select(i => ids[i])]);

        bool NewKey(byte[] read, int i)
        {
            var bytes = _vocabulary.Bytes(ids[i]);
            var tail = bytes[(f.State == StringAutomaton.Q ? 1 : 0)..(table.ClosingSuffix[i] - 1)];
            foreach (var excluded in s.Excluded)
            {
                if (IsConcat(excluded, read, tail))
                {
                    return false;
                }
            }

            return !Has(f.Parent!.Data as KeyChain, read, tail);
        }
    }

    private static bool Has(KeyChain? keys, byte[] read, ReadOnlySpan<byte> tail)
    {
        for (var c = keys; c is not null; c = c.Previous)
        {
            if (c.Key is { } k && IsConcat(k, read, tail))
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsConcat(byte[] key, byte[] head, ReadOnlySpan<byte> tail) =>
        key.Length == head.Length + tail.Length && key.AsSpan(0, head.Length).SequenceEqual(head) && key.AsSpan(head.Length).SequenceEqual(tail);

}
