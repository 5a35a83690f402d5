namespace TaH.Engine.Constraints;

/// <summary>What a step ran into besides the frames it produced.</summary>
internal struct StepFlags
{
    /// <summary>The root rule ended: the output may stop here.</summary>
    public bool Accepting;

    /// <summary>The frame a precomputation starts from ended (what follows depends on its caller).</summary>
    public bool Popped;

    /// <summary>A path needed the starting frame's unknown count or keys.</summary>
    public bool Uncertain;

    /// <summary>A call was not taken: the stack holds <see cref="Stepper.MaxDepth"/> frames.</summary>
    public bool DepthLimited;
}

/// <summary>A set of frames (each the top of a stack), without duplicates, in insertion order.</summary>
internal sealed class FrameSet
{
    private readonly List<Frame> _frames = [];
    private readonly HashSet<Frame> _seen = [];

    public int Count => _frames.Count;

    public Frame this[int i] => _frames[i];

    public bool Add(Frame f)
    {
        if (!_seen.Add(f))
        {
            return false;
        }

        _frames.Add(f);
        return true;
    }

    public void Clear()
    {
        _frames.Clear();
        _seen.Clear();
    }

    public Frame[] ToArray() => [.. _frames];
}

/// <summary>
/// The moves of a nondeterministic pushdown matcher over a <see cref="Grammar"/>: a byte or a token
/// advances the top frame of a stack; closing a frame pushes the rules its state calls and pops
/// the frame when its rule may end, applying the return's effect to the caller.
/// </summary>
internal sealed class Stepper(Grammar grammar)
{
    /// <summary>Frames a stack may hold; deeper calls are not taken (see <see cref="ConstraintMatcher.IsCutShort"/>).</summary>
    public const int MaxDepth = 10_000;

    private readonly IReadOnlyList<Rule> _rules = grammar.Rules;

    public Grammar Grammar { get; } = grammar;

    public Rule RuleOf(Frame f) => _rules[f.Rule];

    public Frame Push(int rule, Effect effect, Frame? parent)
    {
        int start = _rules[rule] is AutomatonRule a ? a.Start : StringAutomaton.Q;
        return new Frame(rule, start, 0, null, effect, parent, false);
    }

    /// <summary>Adds to <paramref name="into"/> every frame that can read next, starting from <paramref name="f"/>.</summary>
    public void Close(Frame f, FrameSet into, ref StepFlags flags)
    {
        if (_rules[f.Rule] is StringRule)
        {
            if (f.State == StringAutomaton.Closed)
            {
                Pop(f, into, ref flags);
            }
            else
            {
                into.Add(f);
            }

            return;
        }

        var a = (AutomatonRule)_rules[f.Rule];
        if (a.Consumes(f.State))
        {
            into.Add(f);
        }

        if (f.Depth < MaxDepth)
        {
            foreach (var call in a.Calls[f.State])
            {
                Close(Push(call.Rule, call.Effect, f.With(call.Target, f.Count, f.Data)), into, ref flags);
            }
        }
        else
        {
            flags.DepthLimited |= a.Calls[f.State].Length > 0;
        }

        if (a.Final[f.State])
        {
            Pop(f, into, ref flags);
        }
    }

    private void Pop(Frame f, FrameSet into, ref StepFlags flags)
    {
        var parent = f.Parent;
        if (parent is null)
        {
            flags.Accepting = true;
            return;
        }

        if (ReferenceEquals(parent, Frame.Context))
        {
            flags.Popped = true;
            return;
        }

        switch (f.Effect)
        {
            case Effect.Increment:
                if (parent.Symbolic)
                {
                    flags.Uncertain = true;
                    return;
                }

                if (parent.Count >= ((AutomatonRule)_rules[parent.Rule]).MaxCount)
                {
                    return;
                }

                parent = parent.With(parent.State, parent.Count + 1, parent.Data);
                break;
            case Effect.AddKey:
                if (!parent.Symbolic)
                {
                    parent = parent.With(parent.State, parent.Count, KeyChain.Add(parent.Data as KeyChain, ByteChain.ToArray(f.Data as ByteChain)));
                }

                break;
        }

        Close(parent, into, ref flags);
    }

    /// <summary>Reads one byte from the top frame <paramref name="f"/>.</summary>
    public void StepByte(Frame f, byte b, FrameSet into, ref StepFlags flags)
    {
        if (_rules[f.Rule] is StringRule s)
        {
            if (StepString(f, s, b, ref flags) is { } next)
            {
                Close(next, into, ref flags);
            }

            return;
        }

        var a = (AutomatonRule)_rules[f.Rule];
        foreach (var e in a.Bytes[f.State])
        {
            if (b < e.Lo || b > e.Hi)
            {
                continue;
            }

            if (e.Guard != Guard.None)
            {
                if (f.Symbolic)
                {
                    flags.Uncertain = true;
                    continue;
                }

                if (e.Guard == Guard.BelowMax ? f.Count >= a.MaxCount : f.Count < a.MinCount)
                {
                    continue;
                }
            }

            Close(f.With(e.Target, f.Count, f.Data), into, ref flags);
        }
    }

    /// <summary>Reads an added token (by id) from the top frame <paramref name="f"/>.</summary>
    public void StepToken(Frame f, int token, FrameSet into, ref StepFlags flags)
    {
        if (_rules[f.Rule] is AutomatonRule a)
        {
            foreach (var e in a.Tokens[f.State])
            {
                if (e.Token == token)
                {
                    Close(f.With(e.Target, f.Count, f.Data), into, ref flags);
                }
            }
        }
    }

    private static Frame? StepString(Frame f, StringRule s, byte b, ref StepFlags flags)
    {
        int code = StringAutomaton.Next(f.State, b, s.Key);
        if (code < 0)
        {
            return null;
        }

        int next = code & StringAutomaton.StateMask;
        int count = f.Count;
        if ((code & StringAutomaton.Starts) != 0 && count >= s.Max)
        {
            return null; // no room for another character
        }

        if ((code & StringAutomaton.Completes) != 0 && s.Counts)
        {
            count++;
        }

        if (next == StringAutomaton.B && f.State == StringAutomaton.Q && s.Min > 0)
        {
            next = StringAutomaton.P;
        }
        else if (next == StringAutomaton.P && count >= s.Min)
        {
            next = StringAutomaton.B;
        }

        var data = f.Data;
        if (s.Key)
        {
            if (next == StringAutomaton.Closed)
            {
                var key = ByteChain.ToArray(data as ByteChain);
                if (s.Excluded.Any(x => x.AsSpan().SequenceEqual(key)))
                {
                    return null;
                }

                if (f.Parent is { Symbolic: true })
                {
                    flags.Uncertain = true;
                    return null;
                }

                if (f.Parent is { } parent && !ReferenceEquals(parent, Frame.Context))
                {
                    switch (KeyChain.Contains(parent.Data as KeyChain, key))
                    {
                        case true:
                            return null; // a key the object has already
                        case null:
                            flags.Uncertain = true;
                            return null;
                    }
                }
            }
            else if (f.State != StringAutomaton.Q)
            {
                data = ByteChain.Add(data as ByteChain, b);
            }
        }

        return f.With(next, count, data);
    }

    /// <summary>Marks in <paramref name="bits"/> (256 bits) the bytes frame <paramref name="f"/> may read next.</summary>
    public void FirstBytes(Frame f, Span<ulong> bits)
    {
        if (_rules[f.Rule] is StringRule s)
        {
            for (int b = 0; b < 256; b++)
            {
                if (StringAutomaton.Next(f.State, (byte)b, s.Key) >= 0)
                {
                    bits[b >> 6] |= 1UL << b;
                }
            }

            return;
        }

        foreach (var e in ((AutomatonRule)_rules[f.Rule]).Bytes[f.State])
        {
            for (int b = e.Lo; b <= e.Hi; b++)
            {
                bits[b >> 6] |= 1UL << b;
            }
        }
    }
}
