using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TaH.Engine.Constraints;
using TaH.Engine.Generation;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Engine.Tokenization;

namespace TaH.Server.Bench;

/// <summary>
/// <c>tah bench --structured FILE</c>: the cost of structured outputs over a corpus of JSON Schemas
/// (a JSON list of {"name", "schema"}): indexing the vocabulary, compiling each schema, computing
/// a mask per token (on walks through each schema that pick random allowed tokens), and decode
/// tokens/s with and without a constraint, interleaved in one run.
/// </summary>
internal static class StructuredBench
{
    private const int Walks = 4, Steps = 64;

    public static void Run(TaHModel model, string tokenizerDirectory, string corpusPath, int promptTokens, int decodeTokens, int rounds, int seed, string? jsonPath, TextWriter output)
    {
        var corpus = Corpus(corpusPath);
        var tokenizer = TextTokenizer.Load(tokenizerDirectory);
        var clock = Stopwatch.StartNew();
        var vocabulary = TokenVocabulary.Create(tokenizer, model.Config.VocabSize);
        double indexMs = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        vocabulary.WarmUp();
        double warmMs = clock.Elapsed.TotalMilliseconds;
        output.WriteLine(Invariant($"vocabulary: {tokenizer.VocabSize} tokens ({vocabulary.TokenCount} indexed, {model.Config.VocabSize} logits); index {indexMs:F0} ms, string tables {warmMs:F0} ms (once per tokenizer)"));

        // Compile: each schema in a fresh compiler. The first pass also fills what the vocabulary
        // keeps for rules every grammar shares (formats, numbers, strings); the second is what a
        // new schema costs after that.
        var cold = new List<double>();
        var compileMs = new List<double>();
        var constraints = new List<Constraint>();
        foreach (var pass in new[] { cold, compileMs })
        {
            constraints.Clear();
            foreach (var (_, schema) in corpus)
            {
                clock.Restart();
                constraints.Add(new ConstraintCompiler(vocabulary).JsonSchema(schema));
                pass.Add(clock.Elapsed.TotalMilliseconds);
            }
        }

        int slowest = compileMs.IndexOf(compileMs.Max()), slowestCold = cold.IndexOf(cold.Max());
        output.WriteLine(Invariant($"compile ({corpus.Count} schemas): median {Median(compileMs):F2} ms, max {compileMs[slowest]:F2} ms ({corpus[slowest].Name}); first use of shared rules: median {Median(cold):F2} ms, max {cold[slowestCold]:F2} ms ({corpus[slowestCold].Name})"));

        // Mask per token: computing it (the bitset) and applying it to a row of logits.
        var computeUs = new List<double>();
        var applyUs = new List<double>();
        var warmUs = new List<double>(); // walks after a schema's first: its shared checks made
        var logits = new float[model.Config.VocabSize];
        var random = new Random(seed);
        int end = model.EosTokenIds.FirstOrDefault();
        foreach (var constraint in constraints)
        {
            for (int w = 0; w < Walks; w++)
            {
                var matcher = constraint.CreateMatcher([end]);
                for (int step = 0; step < Steps && !matcher.IsEnded; step++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    var mask = matcher.ComputeMask();
                    long t1 = Stopwatch.GetTimestamp();
                    mask.Apply(logits);
                    long t2 = Stopwatch.GetTimestamp();
                    computeUs.Add(Stopwatch.GetElapsedTime(t0, t1).TotalMicroseconds);
                    applyUs.Add(Stopwatch.GetElapsedTime(t1, t2).TotalMicroseconds);
                    if (w > 0)
                    {
                        warmUs.Add(Stopwatch.GetElapsedTime(t0, t2).TotalMicroseconds);
                    }

                    var allowed = mask.Allowed().ToArray();
                    matcher.Accept(allowed[random.Next(allowed.Length)]);
                }
            }
        }

        var total = computeUs.Zip(applyUs, (a, b) => a + b).ToList();
        output.WriteLine(Invariant($"mask per token ({total.Count} tokens): compute median {Median(computeUs):F1} us, p99 {Percentile(computeUs, 0.99):F1} us; apply median {Median(applyUs):F1} us; together median {Median(total):F1} us, p99 {Percentile(total, 0.99):F1} us, max {total.Max():F0} us; after each schema's first walk: median {Median(warmUs):F1} us, p99 {Percentile(warmUs, 0.99):F1} us"));

        // Decode at batch 1, plain and constrained, interleaved; a constrained run writes an array
        // of one corpus schema's values that is never long enough to end.
        var plain = new List<double>();
        var constrained = new List<double>();
        var bench = new Random(seed);
        for (int round = 0; round < rounds; round++)
        {
            var prompt = Enumerable.Range(0, promptTokens).Select(_ => bench.Next(vocabulary.TokenCount - 1000)).ToArray();
            // Schemas spread over the corpus; which run goes first alternates.
            var (name, schema) = corpus[round * corpus.Count / rounds];
            var wrapped = new ConstraintCompiler(vocabulary).JsonSchema($$"""{"type":"array","items":{{schema}},"minItems":1000000}""");
            if (round % 2 == 0)
            {
                plain.Add(Decode(model, prompt, decodeTokens, seed + round, null));
                constrained.Add(Decode(model, prompt, decodeTokens, seed + round, wrapped));
            }
            else
            {
                constrained.Add(Decode(model, prompt, decodeTokens, seed + round, wrapped));
                plain.Add(Decode(model, prompt, decodeTokens, seed + round, null));
            }

            output.WriteLine(Invariant($"  round {round + 1}: plain {plain[^1]:F2} tok/s, constrained ({name}) {constrained[^1]:F2} tok/s"));
        }

        if (rounds > 0)
        {
            output.WriteLine(Invariant($"decode at batch 1 ({decodeTokens} tokens, medians of {rounds}): plain {Median(plain):F2} tok/s, constrained {Median(constrained):F2} tok/s, constrained/plain = {Median(constrained) / Median(plain):F3}"));
        }

        if (jsonPath is not null)
        {
            File.WriteAllText(jsonPath, JsonSerializer.Serialize(new
            {
                vocabulary = new { tokens = tokenizer.VocabSize, logits = model.Config.VocabSize, index_ms = indexMs, string_tables_ms = warmMs },
                compile_ms = new { median = Median(compileMs), max = compileMs.Max(), slowest = corpus[slowest].Name, first_use_median = Median(cold), first_use_max = cold.Max(), first_use_slowest = corpus[slowestCold].Name, schemas = corpus.Count },
                mask_us = new { compute_median = Median(computeUs), compute_p99 = Percentile(computeUs, 0.99), apply_median = Median(applyUs), median = Median(total), p99 = Percentile(total, 0.99), max = total.Max(), tokens = total.Count, warm_median = Median(warmUs), warm_p99 = Percentile(warmUs, 0.99) },
                decode_tokens_per_second = new { plain = plain.Count > 0 ? Median(plain) : 0, constrained = constrained.Count > 0 ? Median(constrained) : 0, rounds, tokens = decodeTokens },
                model = model.Directory,
            }, new JsonSerializerOptions { WriteIndented = true }));
        }
    }

    private static double Decode(TaHModel model, int[] prompt, int tokens, int seed, Constraint? constraint)
    {
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = model.MaxDepth * ((prompt.Length + tokens) / 16 + 4), PrefixCaching = false });
        var request = new GenerationRequest
        {
            PromptTokens = prompt,
            MaxTokens = tokens,
            Policy = IterationPolicy.Never,
            Sampling = InProcessBench.Sampling with { Seed = seed },
            IgnoreEos = true,
            Constraint = constraint,
        };
        var sequence = engine.Add(request);
        long start = 0;
        int decoded = 0;
        while (!sequence.IsDone)
        {
            foreach (var (_, e) in engine.Step())
            {
                // Time from the first token on: the prompt's prefill is the same in both runs.
                if (decoded++ == 0)
                {
                    start = Stopwatch.GetTimestamp();
                }
            }
        }

        return (decoded - 1) / Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static List<(string Name, string Schema)> Corpus(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return [.. doc.RootElement.EnumerateArray().Select(e => (e.GetProperty("name").GetString()!, e.GetProperty("schema").GetRawText()))];
    }

    private static double Median(List<double> values) => Percentile(values, 0.5);

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)Math.Floor(p * sorted.Length))];
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
