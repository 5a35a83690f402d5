namespace TaH.Engine.Constraints;

/// <summary>
/// For one vocabulary and one string flavour (a value string, or a key string without escapes),
/// what every token does from each state of <see cref="StringAutomaton"/>, computed once per
/// tokenizer and shared by every constraint: the tokens that stay inside the string (or close it
/// on their last byte), with how many characters they need, and the tokens that close the string
/// and go on, whose rest depends on what follows the string.
/// </summary>
/// <remarks>
/// A token stays valid inside a string whatever the stack below, so its only context is the
/// string frame's count: it needs <c>count + need ≤ maxLength</c>, and from state P (before
/// minLength) either to be plain ASCII throughout or to have at least <c>minLength - count</c>
/// plain ASCII characters before anything else. Both conditions select from bitsets kept per
/// count (made on first use).
/// </remarks>
internal sealed class StringTables
{
    /// <summary>The table index of state Q when the string has a minimum (it opens into P, not B).</summary>
    public const int QWithMinimum = StringAutomaton.States;

    private const int Pure = int.MaxValue;

    private readonly TokenVocabulary _vocabulary;
    private readonly bool _key;
    private readonly Lazy<Table>[] _tables;

    public StringTables(TokenVocabulary vocabulary, bool key)
    {
        _vocabulary = vocabulary;
        _key = key;
        _tables = [.. Enumerable.Range(0, StringAutomaton.States + 1).Select(s => new Lazy<Table>(() => Build(s)))];
    }

    public static int TableIndex(int state, StringRule rule) => state == StringAutomaton.Q && rule.Min > 0 ? QWithMinimum : state;

    public Table this[int index] => _tables[index].Value;

    /// <summary>The tokens of one state.</summary>
    internal sealed class Table(TokenVocabulary vocabulary)
    {
        private ulong[][]? _byNeed;
        private ulong[][]? _byRun;

        /// <summary>Tokens that stay inside (or close on their last byte; not for keys), ascending by need.</summary>
        public required int[] Ids { get; init; }

        public required int[] Need { get; init; }

        /// <summary>Plain ASCII characters a token starts with (states P and Q with a minimum), <see cref="int.MaxValue"/> when it is all plain ASCII.</summary>
        public required int[] Run { get; init; }

        public required ulong[] All { get; init; }

        /// <summary>The longest <see cref="Run"/> short of a whole plain-ASCII token.</summary>
        public required int LongestRun { get; init; }

        public int MaxNeed => Need.Length == 0 ? 0 : Need[^1];

        /// <summary>Tokens that close the string and go on (for keys, every closing token), sorted by the bytes after the quote.</summary>
        public required int[] ClosingIds { get; init; }

        public required int[] ClosingNeed { get; init; }

        public required int[] ClosingRun { get; init; }

        /// <summary>Where the bytes after the closing quote start.</summary>
        public required int[] ClosingSuffix { get; init; }

        /// <summary>Common prefix of each closing token's suffix with the previous one's.</summary>
        public required int[] ClosingLcp { get; init; }

        /// <summary>Inside tokens with need ≤ <paramref name="cap"/>.</summary>
        public ulong[] WithNeedAtMost(int cap)
        {
            if (cap >= MaxNeed)
            {
                return All;
            }

            var table = _byNeed ?? Interlocked.CompareExchange(ref _byNeed, Cumulative(i => Need[i], MaxNeed, ascending: true), null) ?? _byNeed!;
            return table[Math.Max(cap, 0)];
        }

        /// <summary>Inside tokens that reach a minimum <paramref name="remaining"/> characters away in time.</summary>
        public ulong[] WithRunAtLeast(int remaining)
        {
            int longest = LongestRun;
            var table = _byRun ?? Interlocked.CompareExchange(ref _byRun, Cumulative(i => Math.Min(Run[i], longest + 1), longest + 1, ascending: false), null) ?? _byRun!;
            return table[Math.Min(remaining, longest + 1)];
        }

        /// <summary>
        /// Bitsets by a per-token value v in [0, top]: entry c holds the tokens with v ≤ c
        /// (ascending) or v ≥ c (descending), built in one pass.
        /// </summary>
        private ulong[][] Cumulative(Func<int, int> value, int top, bool ascending)
        {
            int words = TokenMask.Words(vocabulary.Size);
            var byValue = new List<int>[top + 1];
            for (int i = 0; i < Ids.Length; i++)
            {
                (byValue[value(i)] ??= []).Add(Ids[i]);
            }

            var result = new ulong[top + 1][];
            var current = new ulong[words];
            for (int k = 0; k <= top; k++)
            {
                int c = ascending ? k : top - k;
                foreach (int id in byValue[c] ?? [])
                {
                    current[id >> 6] |= 1UL << id;
                }

                result[c] = (ulong[])current.Clone();
            }

            return result;
        }
    }

    private enum Kind
    {
        Invalid,
        Inside,
        ClosedAtEnd,
        ClosedThenMore,
    }

    private Table Build(int index)
    {
        var inside = new List<(int Id, int Need, int Run)>();
        var closing = new List<(int Id, int Need, int Run, int Suffix)>();
        foreach (int id in _vocabulary.ByteTokens)
        {
            var bytes = _vocabulary.Bytes(id);
            var (kind, need, run, suffix) = Classify(index, bytes);
            switch (kind)
            {
                case Kind.Inside:
                    inside.Add((id, need, run));
                    break;
                case Kind.ClosedAtEnd when !_key:
                    inside.Add((id, need, run));
                    break;
                case Kind.ClosedAtEnd or Kind.ClosedThenMore:
                    closing.Add((id, need, run, suffix));
                    break;
            }
        }

        inside.Sort((a, b) => a.Need.CompareTo(b.Need));
        var all = new ulong[TokenMask.Words(_vocabulary.Size)];
        foreach (var t in inside)
        {
            all[t.Id >> 6] |= 1UL << t.Id;
        }

        // Closing tokens are checked by what follows the quote, which depends only on the caller.
        closing.Sort((a, b) => _vocabulary.Bytes(a.Id)[a.Suffix..].SequenceCompareTo(_vocabulary.Bytes(b.Id)[b.Suffix..]));
        var lcp = new int[closing.Count];
        for (int i = 1; i < closing.Count; i++)
        {
            lcp[i] = _vocabulary.Bytes(closing[i - 1].Id)[closing[i - 1].Suffix..].CommonPrefixLength(_vocabulary.Bytes(closing[i].Id)[closing[i].Suffix..]);
        }

        return new Table(_vocabulary)
        {
            Ids = [.. inside.Select(t => t.Id)],
            Need = [.. inside.Select(t => t.Need)],
            Run = [.. inside.Select(t => t.Run)],
            All = all,
            LongestRun = inside.Select(t => t.Run).Where(r => r != Pure).DefaultIfEmpty(0).Max(),
            ClosingIds = [.. closing.Select(t => t.Id)],
            ClosingNeed = [.. closing.Select(t => t.Need)],
            ClosingRun = [.. closing.Select(t => t.Run)],
            ClosingSuffix = [.. closing.Select(t => t.Suffix)],
            ClosingLcp = lcp,
        };
    }

    /// <summary>What a token does from a table state, with its count unknown.</summary>
    private (Kind Kind, int Need, int Run, int Suffix) Classify(int index, ReadOnlySpan<byte> bytes)
    {
        int i = 0, state = index;
        bool inRun = index == StringAutomaton.P;
        if (index is StringAutomaton.Q or QWithMinimum)
        {
            if (bytes[0] != '"')
            {
                return (Kind.Invalid, 0, 0, 0);
            }

            i = 1;
            state = StringAutomaton.B;
            inRun = index == QWithMinimum;
        }

        int n = 0, need = 0, run = 0;
        bool tracksRun = inRun;
        for (; i < bytes.Length; i++)
        {
            byte b = bytes[i];
            if (inRun)
            {
                if (StringAutomaton.IsPlainAscii(b))
                {
                    run++;
                    n++;
                    need = n;
                    continue;
                }

                inRun = false;
                state = StringAutomaton.B;
            }

            int code = StringAutomaton.Next(state, b, _key);
            if (code < 0)
            {
                return (Kind.Invalid, 0, 0, 0);
            }

            if ((code & StringAutomaton.Starts) != 0)
            {
                need = Math.Max(need, n + 1);
            }

            if ((code & StringAutomaton.Completes) != 0)
            {
                n++;
                need = Math.Max(need, n);
            }

            state = code & StringAutomaton.StateMask;
            if (state == StringAutomaton.Closed)
            {
                return (i == bytes.Length - 1 ? Kind.ClosedAtEnd : Kind.ClosedThenMore, need, tracksRun ? run : Pure, i + 1);
            }
        }

        return (Kind.Inside, need, !tracksRun || inRun ? Pure : run, 0);
    }
}
