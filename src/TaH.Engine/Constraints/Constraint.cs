using System.Collections.Concurrent;

namespace TaH.Engine.Constraints;

/// <summary>
/// A compiled constraint on a sequence's output (a JSON Schema, JSON of any shape, a regex, a
/// choice, tool calls) for one vocabulary, with every automaton state's token classes already
/// computed. Immutable and shared by every sequence and thread that uses it; each sequence walks it
/// with its own <see cref="ConstraintMatcher"/>.
/// </summary>
public sealed class Constraint
{
    internal Constraint(Grammar grammar, TokenVocabulary vocabulary, string description)
    {
        Grammar = grammar;
        Vocabulary = vocabulary;
        Description = description;
        Stepper = new Stepper(grammar);
        var rules = grammar.Rules;
        Entries = new StateEntry[rules.Count][];
        var work = new List<(int Rule, int State)>();
        for (int r = 0; r < rules.Count; r++)
        {
            if (rules[r] is AutomatonRule { CacheKey: { } key } shared)
            {
                int rule = r;
                Entries[r] = vocabulary.RuleEntries(key, () => [.. Enumerable.Range(0, shared.States).AsParallel().AsOrdered()
                    .Select(s => shared.Consumes(s) ? Walks.Compute(Stepper, vocabulary, rule, s) : StateEntry.Empty)]);
            }
            else if (rules[r] is AutomatonRule a)
            {
                Entries[r] = new StateEntry[a.States];
                for (int s = 0; s < a.States; s++)
                {
                    Entries[r][s] = StateEntry.Empty;
                    if (a.Consumes(s))
                    {
                        work.Add((r, s));
                    }
                }
            }
            else
            {
                Entries[r] = [];
                var strings = vocabulary.Strings(((StringRule)rules[r]).Key);
                _ = strings[StringAutomaton.B]; // the table nearly every string step uses
            }
        }

        Parallel.ForEach(work, w => Entries[w.Rule][w.State] = Walks.Compute(Stepper, vocabulary, w.Rule, w.State));
    }

    /// <summary>What it constrains to, for logs.</summary>
    public string Description { get; }

    public TokenVocabulary Vocabulary { get; }

    /// <summary>Automaton states (a size measure).</summary>
    public int StateCount => Grammar.StateCount;

    internal Grammar Grammar { get; }

    internal Stepper Stepper { get; }

    internal StateEntry[][] Entries { get; }

    /// <summary>Results of checks against a stack, kept for every sequence of this constraint (bounded).</summary>
    internal const int MaxMemo = 4096;

    /// <summary>Which closing tokens of a string state read on after the quote, by the caller (object keys abstracted).</summary>
    internal ConcurrentDictionary<(int Table, bool Key, Frame? Parent, Effect Effect), (int[] Through, int[] Unsure)> Closings { get; } = new();

    /// <summary>Which uncertain tokens of an automaton frame read through, by the frame (object keys abstracted).</summary>
    internal ConcurrentDictionary<Frame, (int[] Through, int[] Unsure)> Uncertain { get; } = new();

    /// <summary>
    /// A matcher at the start of the output. <paramref name="terminators"/> are the tokens that end
    /// a sequence (EOS, stop tokens): allowed once the output is complete, never before.
    /// </summary>
    public ConstraintMatcher CreateMatcher(IEnumerable<int> terminators) => new(this, [.. terminators.Distinct().Order()]);
}
