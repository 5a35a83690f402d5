namespace TaH.Engine.Constraints;

/// <summary>A regular pattern over bytes, calls and tokens: what a rule's body is written in.</summary>
internal abstract record Pattern
{
    public static Pattern Empty { get; } = new SeqP([]);

    public static Pattern Lit(ReadOnlySpan<byte> bytes) => new LitP(bytes.ToArray());

    public static Pattern Lit(string text) => Lit(System.Text.Encoding.UTF8.GetBytes(text));

    public static Pattern Range(byte lo, byte hi, Guard guard = Guard.None) => new RangeP(lo, hi, guard);

    public static Pattern Byte(char c, Guard guard = Guard.None) => new RangeP((byte)c, (byte)c, guard);

    public static Pattern Seq(params Pattern[] parts) => parts.Length == 1 ? parts[0] : new SeqP(parts);

    public static Pattern Alt(params Pattern[] parts) => parts.Length == 1 ? parts[0] : new AltP(parts);

    public static Pattern Opt(Pattern p) => new RepeatP(p, 0, 1);

    public static Pattern Star(Pattern p) => new RepeatP(p, 0, -1);

    public static Pattern Repeat(Pattern p, int min, int max) => new RepeatP(p, min, max);

    public static Pattern Call(int rule, Effect effect = Effect.None) => new CallP(rule, effect);

    public static Pattern Token(int id) => new TokenP(id);

    /// <summary>Matches nothing: a value no schema branch can produce.</summary>
    public static Pattern Nothing { get; } = new AltP([]);
}

/// <summary>
/// A pattern drawn as a graph: <paramref name="Edges"/> between numbered nodes, from node 0 to
/// <paramref name="End"/>. Keeps choices that rejoin (optional properties, item counts) linear in size.
/// </summary>
internal sealed record GraphP(int Nodes, int End, IReadOnlyList<(int From, int To, Pattern Pattern)> Edges) : Pattern;

internal sealed record LitP(byte[] Bytes) : Pattern;

internal sealed record RangeP(byte Lo, byte Hi, Guard Guard) : Pattern;

internal sealed record SeqP(Pattern[] Parts) : Pattern;

internal sealed record AltP(Pattern[] Parts) : Pattern;

/// <summary>Max -1: unbounded.</summary>
internal sealed record RepeatP(Pattern Inner, int Min, int Max) : Pattern;

internal sealed record CallP(int Rule, Effect Effect) : Pattern;

internal sealed record TokenP(int Id) : Pattern;

/// <summary>
/// Thompson construction of a <see cref="Pattern"/>, then subset construction to a deterministic
/// automaton (calls and tokens are letters like bytes). Limits keep a hostile pattern from taking
/// the server's memory.
/// </summary>
internal static class Nfa
{
    public const int MaxNfaStates = 400_000;
    public const int MaxDfaStates = 20_000;

    private sealed class State
    {
        public List<int> Eps { get; } = [];

        public List<(byte Lo, byte Hi, Guard Guard, int To)> Bytes { get; } = [];

        public List<(int Rule, Effect Effect, int To)> Calls { get; } = [];

        public List<(int Token, int To)> Tokens { get; } = [];
    }

    /// <summary>A deterministic automaton before trimming (its calls may go to rules not yet known to finish).</summary>
    internal sealed class Dfa
    {
        public int Start { get; init; }

        public required List<bool> Final { get; init; }

        public required List<List<ByteEdge>> Bytes { get; init; }

        public required List<List<CallEdge>> Calls { get; init; }

        public required List<List<TokenEdge>> Tokens { get; init; }
    }

    public static Dfa Determinize(Pattern pattern, string name)
    {
        var states = new List<State>();
        int New()
        {
            if (states.Count >= MaxNfaStates)
            {
                throw new ConstraintException($"'{name}' is too large to compile (more than {MaxNfaStates} automaton states)", ConstraintError.Unsupported, "size");
            }

            states.Add(new State());
            return states.Count - 1;
        }

        (int Start, int End) Build(Pattern p)
        {
            int s = New();
            switch (p)
            {
                case LitP lit:
                    {
                        int cur = s;
                        foreach (byte b in lit.Bytes)
                        {
                            int next = New();
                            states[cur].Bytes.Add((b, b, Guard.None, next));
                            cur = next;
                        }

                        return (s, cur);
                    }

                case RangeP r:
                    {
                        int e = New();
                        states[s].Bytes.Add((r.Lo, r.Hi, r.Guard, e));
                        return (s, e);
                    }

                case CallP c:
                    {
                        int e = New();
                        states[s].Calls.Add((c.Rule, c.Effect, e));
                        return (s, e);
                    }

                case TokenP t:
                    {
                        int e = New();
                        states[s].Tokens.Add((t.Id, e));
                        return (s, e);
                    }

                case SeqP seq:
                    {
                        int cur = s;
                        foreach (var part in seq.Parts)
                        {
                            var (ps, pe) = Build(part);
                            states[cur].Eps.Add(ps);
                            cur = pe;
                        }

                        return (s, cur);
                    }

                case AltP alt:
                    {
                        int e = New();
                        foreach (var part in alt.Parts)
                        {
                            var (ps, pe) = Build(part);
                            states[s].Eps.Add(ps);
                            states[pe].Eps.Add(e);
                        }

                        return (s, e);
                    }

                case RepeatP rep:
                    {
                        int cur = s;
                        for (int i = 0; i < rep.Min; i++)
                        {
                            var (ps, pe) = Build(rep.Inner);
                            states[cur].Eps.Add(ps);
                            cur = pe;
                        }

                        int e = New();
                        if (rep.Max < 0)
                        {
                            var (ps, pe) = Build(rep.Inner);
                            states[cur].Eps.Add(ps);
                            states[cur].Eps.Add(e);
                            states[pe].Eps.Add(cur);
                            return (s, e);
                        }

                        for (int i = rep.Min; i < rep.Max; i++)
                        {
                            var (ps, pe) = Build(rep.Inner);
                            states[cur].Eps.Add(ps);
                            states[cur].Eps.Add(e);
                            cur = pe;
                        }

                        states[cur].Eps.Add(e);
                        return (s, e);
                    }

                case GraphP g:
                    {
                        var nodes = new int[g.Nodes];
                        nodes[0] = s;
                        for (int i = 1; i < g.Nodes; i++)
                        {
                            nodes[i] = New();
                        }

                        foreach (var (from, to, part) in g.Edges)
                        {
                            var (ps, pe) = Build(part);
                            states[nodes[from]].Eps.Add(ps);
                            states[pe].Eps.Add(nodes[to]);
                        }

                        return (s, nodes[g.End]);
                    }

                default:
                    throw new InvalidOperationException($"unknown pattern {p.GetType().Name}");
            }
        }

        var (start, end) = Build(pattern);

        int[] Closure(IEnumerable<int> seeds)
        {
            var seen = new HashSet<int>();
            var stack = new Stack<int>(seeds);
            while (stack.Count > 0)
            {
                int q = stack.Pop();
                if (seen.Add(q))
                {
                    foreach (int e in states[q].Eps)
                    {
                        stack.Push(e);
                    }
                }
            }

            var result = seen.ToArray();
            Array.Sort(result);
            return result;
        }

        var ids = new Dictionary<SetKey, int>();
        var sets = new List<int[]>();
        var dfa = new Dfa { Start = 0, Final = [], Bytes = [], Calls = [], Tokens = [] };
        int Intern(int[] set)
        {
            var key = new SetKey(set);
            if (ids.TryGetValue(key, out int id))
            {
                return id;
            }

            if (sets.Count >= MaxDfaStates)
            {
                throw new ConstraintException($"'{name}' is too large to compile (more than {MaxDfaStates} deterministic states)", ConstraintError.Unsupported, "size");
            }

            id = sets.Count;
            ids[key] = id;
            sets.Add(set);
            dfa.Final.Add(Array.BinarySearch(set, end) >= 0);
            dfa.Bytes.Add([]);
            dfa.Calls.Add([]);
            dfa.Tokens.Add([]);
            return id;
        }

        Intern(Closure([start]));
        for (int d = 0; d < sets.Count; d++)
        {
            var set = sets[d];
            var byteEdges = set.SelectMany(q => states[q].Bytes).ToList();
            if (byteEdges.Count > 0)
            {
                // Elementary intervals: between consecutive range boundaries every byte goes to the same targets.
                var cuts = new SortedSet<int>();
                foreach (var (lo, hi, _, _) in byteEdges)
                {
                    cuts.Add(lo);
                    cuts.Add(hi + 1);
                }

                var bounds = cuts.ToArray();
                var raw = new List<ByteEdge>();
                for (int i = 0; i + 1 < bounds.Length; i++)
                {
                    int a = bounds[i];
                    foreach (var guard in byteEdges.Where(x => x.Lo <= a && a <= x.Hi).Select(x => x.Guard).Distinct())
                    {
                        var targets = byteEdges.Where(x => x.Lo <= a && a <= x.Hi && x.Guard == guard).Select(x => x.To);
                        raw.Add(new ByteEdge((byte)a, (byte)(bounds[i + 1] - 1), guard, Intern(Closure(targets))));
                    }
                }

                // Neighbouring intervals with the same target and guard become one range.
                raw.Sort((x, y) => x.Guard != y.Guard ? x.Guard.CompareTo(y.Guard) : x.Lo.CompareTo(y.Lo));
                var merged = dfa.Bytes[d];
                foreach (var edge in raw)
                {
                    if (merged.Count > 0 && merged[^1] is var last && last.Guard == edge.Guard && last.Target == edge.Target && last.Hi + 1 == edge.Lo)
                    {
                        merged[^1] = last with { Hi = edge.Hi };
                    }
                    else
                    {
                        merged.Add(edge);
                    }
                }
            }

            foreach (var group in set.SelectMany(q => states[q].Calls).GroupBy(c => (c.Rule, c.Effect)))
            {
                dfa.Calls[d].Add(new CallEdge(group.Key.Rule, group.Key.Effect, Intern(Closure(group.Select(c => c.To)))));
            }

            foreach (var group in set.SelectMany(q => states[q].Tokens).GroupBy(t => t.Token))
            {
                dfa.Tokens[d].Add(new TokenEdge(group.Key, Intern(Closure(group.Select(t => t.To)))));
            }
        }

        return dfa;
    }

    private readonly struct SetKey(int[] set) : IEquatable<SetKey>
    {
        private readonly int[] _set = set;
        private readonly int _hash = Hash(set);

        public bool Equals(SetKey other) => _hash == other._hash && _set.AsSpan().SequenceEqual(other._set);

        public override bool Equals(object? obj) => obj is SetKey k && Equals(k);

        public override int GetHashCode() => _hash;

        private static int Hash(int[] set)
        {
            var h = new HashCode();
            foreach (int x in set)
            {
                h.Add(x);
            }

            return h.ToHashCode();
        }
    }
}

/// <summary>
/// Collects the rules of one grammar (rules may call rules defined later, or themselves), then
/// checks and trims them: every rule must be able to finish, none may call itself before reading
/// anything (left recursion would never end), and only states that can still finish stay.
/// </summary>
internal sealed class GrammarBuilder
{
    private readonly List<object?> _rules = []; // Pattern definition with bounds, or a StringRule
    private readonly List<string> _names = [];
    private readonly Dictionary<string, int> _shared = new(StringComparer.Ordinal);
    private readonly Dictionary<int, string> _keys = [];

    private sealed record Definition(Pattern Pattern, int MinCount, int MaxCount);

    public int Reserve(string name)
    {
        _rules.Add(null);
        _names.Add(name);
        return _rules.Count - 1;
    }

    public void Define(int rule, Pattern pattern, int minCount = 0, int maxCount = int.MaxValue) => _rules[rule] = new Definition(pattern, minCount, maxCount);

    public int Add(string name, Pattern pattern, int minCount = 0, int maxCount = int.MaxValue)
    {
        int id = Reserve(name);
        Define(id, pattern, minCount, maxCount);
        return id;
    }

    /// <summary>One rule per key: the same string or number shape is one rule, however often it is used.</summary>
    public int Shared(string key, Func<int> create)
    {
        if (!_shared.TryGetValue(key, out int id))
        {
            id = create();
            _shared[key] = id;
            _keys[id] = key;
        }

        return id;
    }

    public int String(int min, int max, bool key = false, IReadOnlyList<byte[]>? excluded = null)
    {
        string name = key ? $"key[{min},{max}]#{_rules.Count}" : $"string[{min},{max}]";
        return key
            ? AddString(name, min, max, true, excluded ?? [])
            : Shared(name, () => AddString(name, min, max, false, []));
    }

    private int AddString(string name, int min, int max, bool key, IReadOnlyList<byte[]> excluded)
    {
        _rules.Add(new StringRule(name, min, max, key, excluded));
        _names.Add(name);
        return _rules.Count - 1;
    }

    public Grammar Build(int root)
    {
        if (root != 0)
        {
            throw new InvalidOperationException("the root must be rule 0");
        }

        int n = _rules.Count;
        var dfas = new Nfa.Dfa?[n];
        var bounds = new (int Min, int Max)[n];
        for (int r = 0; r < n; r++)
        {
            switch (_rules[r])
            {
                case Definition d:
                    dfas[r] = Nfa.Determinize(d.Pattern, _names[r]);
                    bounds[r] = (d.MinCount, d.MaxCount);
                    break;
                case StringRule:
                    break;
                default:
                    throw new InvalidOperationException($"rule '{_names[r]}' was reserved but never defined");
            }
        }

        // Rules that can finish, found by fixpoint: a string always can, an automaton when a path
        // from its start to a final state calls only rules that can.
        var productive = new bool[n];
        for (int r = 0; r < n; r++)
        {
            productive[r] = dfas[r] is null;
        }

        bool changed = true;
        var canFinish = new bool[n][];
        while (changed)
        {
            changed = false;
            for (int r = 0; r < n; r++)
            {
                if (dfas[r] is not { } dfa)
                {
                    continue;
                }

                canFinish[r] = CanFinish(dfa, productive);
                if (!productive[r] && canFinish[r][dfa.Start])
                {
                    productive[r] = true;
                    changed = true;
                }
            }
        }

        if (!productive[root])
        {
            throw new ConstraintException("the constraint admits no finite output (every value would have to go on forever)", ConstraintError.Unsatisfiable);
        }

        var rules = new Rule[n];
        for (int r = 0; r < n; r++)
        {
            rules[r] = dfas[r] is { } dfa
                ? productive[r] ? Trim(_names[r], dfa, CanFinish(dfa, productive), productive, bounds[r], dfa.Calls.All(c => c.Count == 0) ? _keys.GetValueOrDefault(r) : null) : Unusable(_names[r])
                : (StringRule)_rules[r]!;
        }

        CheckLeftRecursion(rules);
        return new Grammar(rules);
    }

    private static bool[] CanFinish(Nfa.Dfa dfa, bool[] productive)
    {
        int states = dfa.Final.Count;
        var ok = new bool[states];
        for (int s = 0; s < states; s++)
        {
            ok[s] = dfa.Final[s];
        }

        bool changed = true;
        while (changed)
        {
            changed = false;
            for (int s = 0; s < states; s++)
            {
                if (!ok[s] && (dfa.Bytes[s].Any(e => ok[e.Target]) || dfa.Tokens[s].Any(e => ok[e.Target]) || dfa.Calls[s].Any(e => productive[e.Rule] && ok[e.Target])))
                {
                    ok[s] = true;
                    changed = true;
                }
            }
        }

        return ok;
    }

    private static AutomatonRule Unusable(string name) =>
        new(name) { Start = 0, Final = [false], Bytes = [[]], Calls = [[]], Tokens = [[]] };

    private static AutomatonRule Trim(string name, Nfa.Dfa dfa, bool[] canFinish, bool[] productive, (int Min, int Max) bounds, string? cacheKey)
    {
        // Keep the states reachable from the start through edges into states that can finish.
        int states = dfa.Final.Count;
        var map = new int[states];
        Array.Fill(map, -1);
        var order = new List<int>();
        var stack = new Stack<int>();
        stack.Push(dfa.Start);
        map[dfa.Start] = 0;
        order.Add(dfa.Start);
        while (stack.Count > 0)
        {
            int s = stack.Pop();
            foreach (int t in dfa.Bytes[s].Select(e => e.Target).Concat(dfa.Tokens[s].Select(e => e.Target)).Concat(dfa.Calls[s].Where(e => productive[e.Rule]).Select(e => e.Target)))
            {
                if (canFinish[t] && map[t] < 0)
                {
                    map[t] = order.Count;
                    order.Add(t);
                    stack.Push(t);
                }
            }
        }

        return new AutomatonRule(name)
        {
            Start = 0,
            Final = [.. order.Select(s => dfa.Final[s])],
            Bytes = [.. order.Select(s => dfa.Bytes[s].Where(e => map[e.Target] >= 0).Select(e => e with { Target = map[e.Target] }).ToArray())],
            Calls = [.. order.Select(s => dfa.Calls[s].Where(e => productive[e.Rule] && map[e.Target] >= 0).Select(e => e with { Target = map[e.Target] }).ToArray())],
            Tokens = [.. order.Select(s => dfa.Tokens[s].Where(e => map[e.Target] >= 0).Select(e => e with { Target = map[e.Target] }).ToArray())],
            MinCount = bounds.Min,
            MaxCount = bounds.Max,
            CacheKey = cacheKey,
        };
    }

    /// <summary>A rule that can call itself (directly or not) before reading a byte would push frames forever.</summary>
    private static void CheckLeftRecursion(Rule[] rules)
    {
        int n = rules.Length;
        var nullable = new bool[n];
        bool changed = true;
        while (changed)
        {
            changed = false;
            for (int r = 0; r < n; r++)
            {
                if (!nullable[r] && rules[r] is AutomatonRule a && ReachableWithoutInput(a, nullable).Any(s => a.Final[s]))
                {
                    nullable[r] = true;
                    changed = true;
                }
            }
        }

        var first = new List<int>[n]; // rules called before any input
        for (int r = 0; r < n; r++)
        {
            first[r] = rules[r] is AutomatonRule a
                ? [.. ReachableWithoutInput(a, nullable).SelectMany(s => a.Calls[s]).Select(c => c.Rule).Distinct()]
                : [];
        }

        var color = new int[n]; // 0 new, 1 on the path, 2 done
        foreach (int start in Enumerable.Range(0, n))
        {
            if (color[start] != 0)
            {
                continue;
            }

            var stack = new Stack<(int Rule, int Next)>();
            stack.Push((start, 0));
            color[start] = 1;
            while (stack.Count > 0)
            {
                var (r, i) = stack.Pop();
                if (i < first[r].Count)
                {
                    stack.Push((r, i + 1));
                    int c = first[r][i];
                    if (color[c] == 1)
                    {
                        throw new ConstraintException($"'{rules[c].Name}' refers to itself before anything is read (left recursion), so it would never end", ConstraintError.Invalid);
                    }

                    if (color[c] == 0)
                    {
                        color[c] = 1;
                        stack.Push((c, 0));
                    }
                }
                else
                {
                    color[r] = 2;
                }
            }
        }
    }

    private static IEnumerable<int> ReachableWithoutInput(AutomatonRule a, bool[] nullable)
    {
        var seen = new HashSet<int> { a.Start };
        var stack = new Stack<int>();
        stack.Push(a.Start);
        while (stack.Count > 0)
        {
            int s = stack.Pop();
            foreach (var call in a.Calls[s])
            {
                if (nullable[call.Rule] && seen.Add(call.Target))
                {
                    stack.Push(call.Target);
                }
            }
        }

        return seen;
    }
}
