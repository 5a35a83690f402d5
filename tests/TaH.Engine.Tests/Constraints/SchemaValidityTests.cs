using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using TaH.Checkpoints.Writing;
using TaH.Engine.Constraints;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Engine.Tokenization;
using Xunit.Abstractions;

namespace TaH.Engine.Tests.Constraints;

/// <summary>
/// Every schema of tests/fixtures/structured-outputs/schemas.json, decoded with seeded sampling at
/// temperature 1 from random weights (nothing but the mask keeps them valid) and from the demo
/// model: every output that did not stop on length must parse (strict JSON: valid UTF-8, no
/// duplicate keys) and validate against its schema under JsonSchema.Net, with formats checked.
/// </summary>
public sealed class SchemaValidityTests(ITestOutputHelper output)
{
    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    public static IReadOnlyList<(string Name, string Schema)> Corpus { get; } = LoadCorpus();

    private static List<(string, string)> LoadCorpus()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Directory(Path.Combine("structured-outputs", "schemas.json"))));
        return [.. doc.RootElement.EnumerateArray().Select(e => (e.GetProperty("name").GetString()!, e.GetProperty("schema").GetRawText()))];
    }

    [Fact]
    public void TheCorpusCoversEveryKeywordTheIssueLists()
    {
        string all = string.Join("\n", Corpus.Select(c => c.Schema));
        Assert.True(Corpus.Count >= 60, $"{Corpus.Count} schemas");
        foreach (string keyword in new[] { "properties", "required", "additionalProperties", "enum", "const", "items", "prefixItems", "minItems", "maxItems", "anyOf", "oneOf", "$ref", "$defs", "minLength", "maxLength", "minimum", "maximum" })
        {
            Assert.Contains($"\"{keyword}\"", all, StringComparison.Ordinal);
        }

        foreach (string value in new[] { "null", "boolean", "integer", "number", "string", "array", "object", "date", "date-time", "uuid", "email" })
        {
            Assert.Contains($"\"{value}\"", all, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void RandomQwen3ShapedModel()
    {
        using var dir = new TempDirectory();
        RandomCheckpoint.Write(dir.Path, ModelShape.TinyQwen3Vocab, seed: 11);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
        {
            File.Copy(Path.Combine(Fixtures.Directory("qwen3-tokenizer"), file), dir.File(file));
        }

        Run(dir.Path, "Answer with JSON only.", seeds: 6, maxTokens: 120);
    }

    [Fact]
    public void DemoModel() => Run(Path.Combine(Fixtures.Root, "models", "tah-arith"), "12+34=", seeds: 6, maxTokens: 160);

    private void Run(string modelDir, string promptText, int seeds, int maxTokens)
    {
        using var model = ModelLoader.Load(modelDir);
        var tokenizer = TextTokenizer.Load(modelDir);
        var compiler = new ConstraintCompiler(TokenVocabulary.Create(tokenizer, model.Config.VocabSize));
        var prompt = tokenizer.Encode(promptText);
        maxTokens = Math.Min(maxTokens, model.Config.MaxPositionEmbeddings - prompt.Count - 1);
        IterationPolicy[] policies = model.MaxDepth > 1 ? [IterationPolicy.Never, IterationPolicy.Decider, IterationPolicy.Always] : [IterationPolicy.Never];
        var requests = new Dictionary<GenerationRequest, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < Corpus.Count; i++)
        {
            requests[new GenerationRequest
            {
                PromptTokens = prompt,
                MaxTokens = maxTokens,
                N = seeds,
                Policy = policies[i % policies.Length],
                Sampling = new SamplingParams { Temperature = 1f, TopP = 1f, TopK = 0, Seed = 1000 * i },
                Constraint = compiler.JsonSchema(Corpus[i].Schema),
            }] = i;
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 4096, MaxRunning = 128 });
        foreach (var request in requests.Keys)
        {
            engine.Add(request);
        }

        var tokens = new Dictionary<Sequence, List<int>>(ReferenceEqualityComparer.Instance);
        var finished = new List<(Sequence Sequence, FinishReason Reason)>();
        while (engine.HasWork)
        {
            foreach (var (sequence, e) in engine.Step())
            {
                if (!tokens.TryGetValue(sequence, out var list))
                {
                    tokens[sequence] = list = [];
                }

                list.Add(e.Token);
                if (e.Finish is { } reason)
                {
                    finished.Add((sequence, reason));
                }
            }
        }

        var vocabulary = compiler.Vocabulary;
        var failures = new List<string>();
        var completed = new int[Corpus.Count];
        var evaluation = new EvaluationOptions { RequireFormatValidation = true, OutputFormat = OutputFormat.List };
        foreach (var (sequence, reason) in finished)
        {
            int index = requests[sequence.Request];
            var generated = tokens[sequence];
            Assert.True(reason is FinishReason.Stop or FinishReason.Length, $"finish {reason}");
            if (reason == FinishReason.Length)
            {
                continue;
            }

            Assert.Contains(generated[^1], model.EosTokenIds);
            var bytes = generated.Take(generated.Count - 1).SelectMany(t => vocabulary.Bytes(t).ToArray()).ToArray();
            var (name, schema) = Corpus[index];
            try
            {
                string text = StrictUtf8.GetString(bytes);
                using (JsonDocument.Parse(text, new JsonDocumentOptions { AllowDuplicateProperties = false }))
                {
                }

                var result = JsonSchema.FromText(schema).Evaluate(JsonNode.Parse(text), evaluation);
                if (!result.IsValid)
                {
                    var errors = result.Details.Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(x => $"{d.InstanceLocation}: {x.Value}"));
                    failures.Add($"{name}: {JsonSerializer.Serialize(text)} does not validate: {string.Join("; ", errors)}");
                }
                else
                {
                    completed[index]++;
                }
            }
            catch (Exception e) when (e is JsonException or DecoderFallbackException)
            {
                failures.Add($"{name}: {Convert.ToHexString(bytes)} does not parse: {e.Message}");
            }
        }

        Assert.Equal(Corpus.Count * seeds, finished.Count);
        int total = completed.Sum();
        output.WriteLine($"{modelDir}: {total} of {finished.Count} outputs complete and valid ({tokens.Values.Sum(t => t.Count)} tokens decoded in {clock.Elapsed.TotalSeconds:F1} s); none: {string.Join(", ", Enumerable.Range(0, Corpus.Count).Where(i => completed[i] == 0).Select(i => Corpus[i].Name))}");
        Assert.True(failures.Count == 0, $"{failures.Count} invalid outputs:\n{string.Join("\n", failures.Take(20))}");

        // Not vacuous: most outputs end, and nearly every schema has some that do.
        Assert.True(total >= finished.Count / 2, $"only {total} of {finished.Count} outputs ended before the length limit");
        Assert.True(completed.Count(c => c > 0) >= Corpus.Count * 9 / 10, $"only {completed.Count(c => c > 0)} of {Corpus.Count} schemas had an output that ended");
    }
}
