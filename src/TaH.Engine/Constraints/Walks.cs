namespace TaH.Engine.Constraints;

/// <summary>
/// What the tokens do from one automaton state, whatever the stack below it (the adaptive token
/// mask of xgrammar): accepted from this state alone, rejected from it alone, or uncertain, when
/// the token reads past the end of the state's rule (or needs its count or keys) and only the
/// real stack can tell.
/// </summary>
internal sealed class StateEntry
{
    public static StateEntry Empty { get; } = new([], null, [], [], []);

    public StateEntry(int[] accepted, ulong[]? acceptedBits, int[] uncertain, int[] uncertainLcp, int[] tokens)
    {
        Accepted = accepted;
        AcceptedBits = acceptedBits;
        Uncertain = uncertain;
        UncertainLcp = uncertainLcp;
        Tokens = tokens;
    }

    /// <summary>Accepted ids when few; else <see cref="AcceptedBits"/>.</summary>
    public int[] Accepted { get; }

    public ulong[]? AcceptedBits { get; }

    /// <summary>Uncertain ids, sorted by their bytes.</summary>
    public int[] Uncertain { get; }

    /// <summary>Common prefix of each uncertain token with the one before it.</summary>
    public int[] UncertainLcp { get; }

    /// <summary>Added tokens this state takes by id.</summary>
    public int[] Tokens { get; }
}

/// <summary>Scratch of one thread's walks: a frame set per depth of a token.</summary>
internal sealed class WalkScratch
{
    private readonly List<FrameSet> _levels = [];
    private readonly List<bool> _tainted = [];

    public FrameSet Level(int depth)
    {
        while (_levels.Count <= depth)
        {
            _levels.Add(new FrameSet());
            _tainted.Add(false);
        }

        return _levels[depth];
    }

    /// <summary>Whether a path to this depth ran into something unknown.</summary>
    public bool Tainted(int depth) => _tainted[depth];

    public void SetTainted(int depth, bool value) => _tainted[depth] = value;
}

internal static class Walks
{
    /// <summary>The bitset is kept instead of the id list above this many accepted tokens.</summary>
    private const int BitsAbove = 2048;

    /// <summary>
    /// Classifies every ordinary token from state <paramref name="state"/> of automaton rule
    /// <paramref name="rule"/> by walking the vocabulary trie, pruning where no path goes on.
    /// The walk starts from the state's own bytes; the rules it calls have frames of their own in a
    /// matcher's set. A token that ends exactly where the rule ends is accepted: returning to the
    /// caller always succeeds (the grammar's calls are only taken where their return fits).
    /// </summary>
    public static StateEntry Compute(Stepper stepper, TokenVocabulary v, int rule, int state)
    {
        var a = (AutomatonRule)stepper.Grammar.Rules[rule];
        int[] tokens = [.. a.Tokens[state].Select(t => t.Token).Distinct().Order()];
        if (a.Bytes[state].Length == 0)
        {
            return tokens.Length == 0 ? StateEntry.Empty : new StateEntry([], null, [], [], tokens);
        }

        var accepted = new List<int>();
        var uncertain = new List<int>();
        if (IsAnyBytesLoop(a, state))
        {
            accepted.AddRange(v.ByteTokens);
        }
        else if (a.Calls.All(c => c.Length == 0) && a.Bytes.All(edges => edges.All(e => e.Guard == Guard.None)))
        {
            WalkDfa(a, v, state, accepted, uncertain);
        }
        else
        {
            WalkFrames(stepper, v, new Frame(rule, state, 0, null, Effect.None, Frame.Context, symbolic: true), accepted, uncertain);
        }

        return Entry(v, accepted, uncertain, tokens);
    }

    private static StateEntry Entry(TokenVocabulary v, List<int> accepted, List<int> uncertain, int[] tokens)
    {
        accepted.Sort();
        ulong[]? bits = null;
        if (accepted.Count > BitsAbove)
        {
            bits = new ulong[TokenMask.Words(v.Size)];
            foreach (int id in accepted)
            {
                bits[id >> 6] |= 1UL << id;
            }
        }

        uncertain.Sort((x, y) => v.Bytes(x).SequenceCompareTo(v.Bytes(y)));
        var lcp = new int[uncertain.Count];
        for (int i = 1; i < uncertain.Count; i++)
        {
            lcp[i] = v.Bytes(uncertain[i - 1]).CommonPrefixLength(v.Bytes(uncertain[i]));
        }

        return new StateEntry(bits is null ? [.. accepted] : [], bits, [.. uncertain], lcp, tokens);
    }

    /// <summary>A state that reads any byte and stays (free text, e.g. a think block): every token.</summary>
    private static bool IsAnyBytesLoop(AutomatonRule a, int state) =>
        a.Bytes[state] is [{ Lo: 0, Hi: 255, Guard: Guard.None } e] && e.Target == state && a.Calls[state].Length == 0 && !a.Final[state];

    private static void AddSubtree(TokenVocabulary v, int node, bool includeSelf, List<int> into)
    {
        for (int n = includeSelf ? node : node + 1; n < v.SubtreeEnd[node]; n++)
        {
            if (v.NodeToken[n] >= 0)
            {
                into.Add(v.NodeToken[n]);
            }
        }
    }

    /// <summary>The walk of a rule without calls or guards: one state per trie node.</summary>
    private static void WalkDfa(AutomatonRule a, TokenVocabulary v, int start, List<int> accepted, List<int> uncertain)
    {
        var stack = new Stack<(int Node, int State, bool Tainted)>();
        stack.Push((TokenVocabulary.Root, start, false));
        while (stack.Count > 0)
        {
            var (node, state, tainted) = stack.Pop();
            var edges = a.Bytes[state];
            for (int k = v.ChildStart[node]; k < v.ChildStart[node + 1]; k++)
            {
                byte b = v.ChildByte[k];
                int child = v.ChildNode[k];
                int target = -1;
                foreach (var e in edges)
                {
                    if (b >= e.Lo && b <= e.Hi)
                    {
                        target = e.Target;
                        break;
                    }
                }

                if (target < 0)
                {
                    if (tainted)
                    {
                        AddSubtree(v, child, includeSelf: true, uncertain);
                    }

                    continue;
                }

                // Trimmed: every state is final or reads on, so the token ending here is fine.
                if (v.NodeToken[child] >= 0)
                {
                    accepted.Add(v.NodeToken[child]);
                }

                bool below = tainted || a.Final[target];
                if (a.Bytes[target].Length > 0)
                {
                    stack.Push((child, target, below));
                }
                else if (below)
                {
                    AddSubtree(v, child, includeSelf: false, uncertain);
                }
            }
        }
    }

    private static void WalkFrames(Stepper stepper, TokenVocabulary v, Frame start, List<int> accepted, List<int> uncertain)
    {
        var stack = new Stack<(int Node, Frame[] Frames, bool Tainted)>();
        stack.Push((TokenVocabulary.Root, [start], false));
        var next = new FrameSet();
        Span<ulong> first = stackalloc ulong[4];
        while (stack.Count > 0)
        {
            var (node, frames, tainted) = stack.Pop();
            first.Clear();
            foreach (var f in frames)
            {
                stepper.FirstBytes(f, first);
            }

            for (int k = v.ChildStart[node]; k < v.ChildStart[node + 1]; k++)
            {
                byte b = v.ChildByte[k];
                int child = v.ChildNode[k];
                if ((first[b >> 6] & (1UL << b)) == 0)
                {
                    if (tainted)
                    {
                        AddSubtree(v, child, includeSelf: true, uncertain);
                    }

                    continue;
                }

                next.Clear();
                var flags = default(StepFlags);
                foreach (var f in frames)
                {
                    stepper.StepByte(f, b, next, ref flags);
                }

                int token = v.NodeToken[child];
                if (token >= 0)
                {
                    if (next.Count > 0 || flags.Popped)
                    {
                        accepted.Add(token);
                    }
                    else if (tainted || flags.Uncertain)
                    {
                        uncertain.Add(token);
                    }
                }

                bool below = tainted || flags.Popped || flags.Uncertain;
                if (next.Count > 0)
                {
                    stack.Push((child, next.ToArray(), below));
                }
                else if (below)
                {
                    AddSubtree(v, child, includeSelf: false, uncertain);
                }
            }
        }
    }

    /// <summary>
    /// Runs byte strings (tokens, or the parts of tokens after a string's closing quote), sorted by
    /// bytes, from a real set of frames, sharing the work of common prefixes; calls
    /// <paramref name="accept"/> with the index of each one that reads through, and
    /// <paramref name="uncertain"/> with those that only failed on something unknown (a key not
    /// known yet). <paramref name="skip"/> leaves out indexes already known.
    /// </summary>
    public static void Exact(
        Stepper stepper,
        WalkScratch scratch,
        FrameSet start,
        bool startAccepting,
        int count,
        Func<int, ReadOnlySpan<byte>> bytesOf,
        int[] lcp,
        Func<int, bool> skip,
        Action<int> accept,
        Action<int>? uncertain = null)
    {
        var root = scratch.Level(0);
        root.Clear();
        for (int i = 0; i < start.Count; i++)
        {
            root.Add(start[i]);
        }

        scratch.SetTainted(0, false);
        int valid = 0, dead = int.MaxValue, common = 0;
        bool deadTainted = false;
        for (int i = 0; i < count; i++)
        {
            if (i > 0)
            {
                common = Math.Min(common, lcp[i]);
            }

            if (common >= dead)
            {
                // Shares the prefix that went nowhere.
                if (deadTainted && !skip(i))
                {
                    uncertain?.Invoke(i);
                }

                continue;
            }

            if (skip(i))
            {
                continue;
            }

            var bytes = bytesOf(i);
            int d = Math.Min(common, valid);
            common = int.MaxValue;
            dead = int.MaxValue;
            bool through = bytes.Length == 0 ? root.Count > 0 || startAccepting : true;
            bool tainted = false;
            for (; d < bytes.Length; d++)
            {
                var from = scratch.Level(d);
                var to = scratch.Level(d + 1);
                to.Clear();
                var flags = default(StepFlags);
                for (int j = 0; j < from.Count; j++)
                {
                    stepper.StepByte(from[j], bytes[d], to, ref flags);
                }

                scratch.SetTainted(d + 1, scratch.Tainted(d) || flags.Uncertain);
                valid = d + 1;
                if (to.Count == 0)
                {
                    through = d + 1 == bytes.Length && flags.Accepting;
                    dead = d + 1;
                    deadTainted = scratch.Tainted(d + 1);
                    tainted = deadTainted;
                    break;
                }
            }

            if (through)
            {
                accept(i);
            }
            else if (tainted)
            {
                uncertain?.Invoke(i);
            }
        }
    }
}
