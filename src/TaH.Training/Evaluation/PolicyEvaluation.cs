using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using TaH.Engine.Generation;
using TaH.Engine.Kv;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Engine.Tokenization;
using TaH.Training.Data;
using TaH.Training.Model;
using static TorchSharp.torch;

namespace TaH.Training.Evaluation;

/// <summary>One policy's row of the table.</summary>
public sealed record PolicyResult(string Policy, int Problems, int Correct, int AnswerTokens, int IteratedTokens,
    Dictionary<string, CategoryCount> ByCategory, Dictionary<string, int> IteratedByToken)
{
    public double Accuracy => (double)Correct / Math.Max(1, Problems);

    /// <summary>Mean passes per answer token (digits and the end token).</summary>
    public double AverageDepth => 1 + ((double)IteratedTokens / Math.Max(1, AnswerTokens));

    public double IterateShare => (double)IteratedTokens / Math.Max(1, AnswerTokens);
}

/// <summary>A held-out chat problem: the conversation, its prompt turns and the gold answer.</summary>
internal sealed record Problem(JsonArray Messages, List<ChatMessage> Prompt, string Gold);

/// <summary>Answer tokens of one kind, and how many of them took a second pass.</summary>
public sealed record CategoryCount(int Tokens, int Iterated)
{
    public double Share => (double)Iterated / Math.Max(1, Tokens);
}

/// <summary>
/// The README table: exact-answer accuracy and depth on held-out chat problems for Always-1
/// (<c>never</c>), Always-2 (<c>always</c>) and TaH (<c>decider</c>), each generated greedily by the
/// engine exactly as the server runs it, and for the Oracle (iterate where the reference model's
/// top-1 next token is wrong, gold labels given), run teacher-forced in the trainable model: with
/// greedy decoding, an answer is generated exactly iff every teacher-forced argmax is right.
/// Depth counts the passes of each answer token's prediction (digits and <c>&lt;|im_end|&gt;</c>).
/// </summary>
public sealed record PolicyEvaluation(string Model, PolicyResult[] Results)
{
    public static readonly string[] Categories = ["leading digit", "other digit, carry arrives", "other digit, no carry", "end of answer"];

    /// <param name="options">Where and in what weight format the engine runs the three policies (the oracle runs in the trainable fp32 model).</param>
    public static PolicyEvaluation Run(string modelDir, string? referenceDir, IReadOnlyList<string> jsonlLines, TextTokenizer tokenizer, TextWriter log, ModelOptions? options = null)
    {
        var problems = Problems(jsonlLines);
        var results = new List<PolicyResult>();
        using (var model = ModelLoader.Load(modelDir, options))
        {
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{WeightFormats.Name(model.Base.Weights, model.Decider?.Weights)} weights: {model.WeightBytes / 1e6:F1} MB"));
            foreach (var policy in new[] { IterationPolicy.Never, IterationPolicy.Always, IterationPolicy.Decider })
            {
                results.Add(Generate(model, tokenizer, problems, policy));
                log.WriteLine($"{results[^1].Policy}: {results[^1].Correct}/{problems.Count} correct");
            }
        }

        results.Add(Oracle(modelDir, referenceDir, problems, tokenizer));
        log.WriteLine($"oracle: {results[^1].Correct}/{problems.Count} correct");
        return new PolicyEvaluation(modelDir, [results[0], results[1], results[3], results[2]]);
    }

    /// <summary>Chat problems of a JSONL file: the conversation, the prompt (all but the last turn) and the gold answer.</summary>
    internal static List<Problem> Problems(IReadOnlyList<string> jsonlLines) =>
        [.. jsonlLines.Select(line =>
        {
            var messages = (JsonArray)JsonNode.Parse(line)!["messages"]!;
            return new Problem(messages, [.. messages.Take(messages.Count - 1).Select(m => new ChatMessage(m!["role"]!.GetValue<string>(), m["content"]!.GetValue<string>()))],
                messages[^1]!["content"]!.GetValue<string>());
        })];

    /// <summary>
    /// Each problem generated greedily under <paramref name="policy"/>, one after another by one
    /// engine, as a server answers them: what the engine learns across requests (the decider's
    /// population that budgets start from) carries over.
    /// </summary>
    internal static PolicyResult Generate(TaHModel model, TextTokenizer tokenizer, IReadOnlyList<Problem> problems, IterationPolicy policy)
    {
        var requests = problems.Select(p => new GenerationRequest
        {
            PromptTokens = tokenizer.Encode(tokenizer.ChatTemplate!.Render(p.Prompt, addGenerationPrompt: true)),
            MaxTokens = p.Gold.Length + 4,
            Policy = policy,
            Sampling = SamplingParams.Greedy,
        }).ToList();
        var tally = new Tally(policy.ToString());
        if (requests.Count == 0)
        {
            return tally.Result(0);
        }

        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 2 * requests.Max(r => KvBudget.PoolFor(r, model.MaxDepth)) });
        for (int i = 0; i < requests.Count; i++)
        {
            var (_, prompt, gold) = problems[i];
            var events = engine.Generate(requests[i]).ToList();
            var tokens = events.Select(e => e.Token).ToList();
            string answer = tokenizer.Decode(tokens.Where(t => !model.EosTokenIds.Contains(t)).ToList(), skipSpecialTokens: true);
            tally.Add(prompt, gold, answer == gold && model.EosTokenIds.Contains(tokens[^1]),
                [.. events.Select(e => e.Depth > 1)], [.. tokens.Select(t => tokenizer.Decode([t]))]);
        }

        return tally.Result(problems.Count);
    }

    /// <summary>The oracle, teacher-forced: hard positions come from the reference model's mistakes on the gold answer.</summary>
    internal static PolicyResult Oracle(string modelDir, string? referenceDir, IReadOnlyList<Problem> problems, TextTokenizer tokenizer)
    {
        using var model = TaHCheckpoint.Load(modelDir);
        using var separate = referenceDir is null ? null : TaHCheckpoint.Load(referenceDir);
        var examples = problems.Select(p => Example.FromChat(p.Messages, tokenizer, "eval")).ToList();
        int pad = tokenizer.PadTokenId ?? tokenizer.EosTokenId!.Value;
        var labelled = OracleLabels.Label(separate ?? model, examples, pad, 128);
        var tally = new Tally("oracle");
        using var _ = no_grad();
        for (int start = 0; start < labelled.Count; start += 128)
        {
            var chunk = labelled.Skip(start).Take(128).ToList();
            using var scope = NewDisposeScope();
            using var batch = Batch.Make(chunk, pad);
            var final = model.Depth2(model.Depth1(batch.Ids), batch.Hard!);
            long t = batch.Ids.shape[1];
            var predicted = final.argmax(-1).data<long>().ToArray();
            for (int i = 0; i < chunk.Count; i++)
            {
                var e = chunk[i];
                int first = Array.IndexOf(e.Supervised, true);
                var positions = Enumerable.Range(first, e.Tokens.Length - 1 - first).ToList();
                bool correct = positions.All(p => predicted[(i * t) + p] == e.Tokens[p + 1]);
                var (_, prompt, gold) = problems[start + i];
                tally.Add(prompt, gold, correct, [.. positions.Select(p => e.Hard![p])], [.. positions.Select(p => tokenizer.Decode([e.Tokens[p + 1]]))]);
            }
        }

        return tally.Result(problems.Count);
    }

    /// <summary>The table in Markdown, and the share of each kind of answer token that iterates.</summary>
    public string Markdown()
    {
        var sb = new StringBuilder();
        sb.AppendLine("| policy | exact-answer accuracy | average depth | answer tokens iterated |");
        sb.AppendLine("|---|---|---|---|");
        foreach (var r in Results)
        {
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {Name(r.Policy)} | {r.Accuracy:P1} ({r.Correct}/{r.Problems}) | {r.AverageDepth:0.000} | {r.IterateShare:P1} |"));
        }

        sb.AppendLine();
        sb.AppendLine("| answer token | " + string.Join(" | ", Results.Where(r => r.Policy is "decider" or "oracle").Select(r => Name(r.Policy))) + " |");
        sb.AppendLine("|---|---|---|");
        foreach (string category in Categories)
        {
            var cells = Results.Where(r => r.Policy is "decider" or "oracle").Select(r =>
                r.ByCategory.TryGetValue(category, out var c) ? string.Create(CultureInfo.InvariantCulture, $"{c.Share:P1} of {c.Tokens}") : "-");
            sb.AppendLine($"| {category} | {string.Join(" | ", cells)} |");
        }

        if (Results.FirstOrDefault(r => r.Policy == "decider") is { } decider)
        {
            int total = Math.Max(1, decider.IteratedTokens);
            sb.AppendLine();
            sb.AppendLine("Tokens the decider sends to depth 2 most: " + string.Join(", ", decider.IteratedByToken
                .OrderByDescending(kv => kv.Value).Take(6)
                .Select(kv => string.Create(CultureInfo.InvariantCulture, $"'{kv.Key}' {100.0 * kv.Value / total:0.#}%"))));
        }

        return sb.ToString();
    }

    private static string Name(string policy) => policy switch
    {
        "never" => "Always-1 (`never`)",
        "always" => "Always-2 (`always`)",
        "oracle" => "Oracle (labels given)",
        _ => "TaH (`decider`)",
    };

    /// <summary>Accumulates one policy's answers and iterations.</summary>
    private sealed class Tally(string name)
    {
        private readonly Dictionary<string, CategoryCount> _categories = [];
        private readonly Dictionary<string, int> _byToken = [];
        private int _tokens;
        private int _iterated;

        public string Name { get; } = name;

        public int Correct { get; private set; }

        /// <summary>
        /// One problem: whether the answer was right, and for each answer token (in order) whether its
        /// prediction iterated and its text. A token is classified (leading digit, carry, ...) when the
        /// tokens before it are the gold answer's, right or wrong itself.
        /// </summary>
        public void Add(List<ChatMessage> prompt, string gold, bool correct, bool[] iterated, string[] texts)
        {
            Correct += correct ? 1 : 0;
            _tokens += iterated.Length;
            _iterated += iterated.Count(i => i);
            var carries = AdditionProblem.Parse(prompt[^1].Content ?? "")?.CarryIn();
            for (int k = 0; k < iterated.Length; k++)
            {
                if (iterated[k])
                {
                    _byToken[texts[k]] = _byToken.GetValueOrDefault(texts[k]) + 1;
                }

                // Classified by the gold answer's token at k, while the output so far is the gold answer's start.
                if (carries is null || k > gold.Length || string.Concat(texts.Take(k)) != gold[..k])
                {
                    continue;
                }

                string category = k == gold.Length ? Categories[3] : k == 0 ? Categories[0] : carries[k] ? Categories[1] : Categories[2];
                var count = _categories.GetValueOrDefault(category) ?? new CategoryCount(0, 0);
                _categories[category] = new CategoryCount(count.Tokens + 1, count.Iterated + (iterated[k] ? 1 : 0));
            }
        }

        public PolicyResult Result(int problems) => new(Name, problems, Correct, _tokens, _iterated, _categories, _byToken);
    }
}
