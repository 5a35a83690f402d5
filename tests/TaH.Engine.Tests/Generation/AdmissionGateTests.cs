using System.Text.Json.Nodes;
using TaH.Engine.Constraints;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Engine.Tokenization;

namespace TaH.Engine.Tests.Generation;

/// <summary>The engine's one check of a request: each rule refuses with the field and code at fault.</summary>
public sealed class AdmissionGateTests : IDisposable
{
    private readonly TaHModel _model = ModelLoader.Load(Fixtures.TinyCheckpoint("a"));

    public void Dispose() => _model.Dispose();

    // 16 blocks of 16 entries over 2 depths: 8 per depth; a prompt of up to 16 tokens takes 1,
    // each sample 2 for copies plus its output: one sample fits 80 tokens, two 16 each, three none.
    private AdmissionGate Gate(int maxModelLength = 64, int kvBlocks = 16) =>
        new InferenceEngine(_model, new EngineOptions { KvBlocks = kvBlocks, BlockSize = 16, MaxModelLength = maxModelLength, MaxSamples = 16 }).Admission;

    private static GenerationRequest Request(int promptTokens = 4, int maxTokens = 8, int n = 1) => new()
    {
        PromptTokens = [.. Enumerable.Range(1, promptTokens)],
        MaxTokens = maxTokens,
        N = n,
        Sampling = SamplingParams.Greedy,
    };

    public static TheoryData<string, string, string?> Refusals => new()
    {
        // case, param, code
        { "empty prompt", RequestFields.Prompt, null },
        { "token outside the vocabulary", RequestFields.Prompt, null },
        { "prompt fills the context", RequestFields.Prompt, RequestFields.ContextLengthExceeded },
        { "prompt plus output over the context", RequestFields.MaxTokens, RequestFields.ContextLengthExceeded },
        { "no output", RequestFields.MaxTokens, null },
        { "output larger than the pool", RequestFields.MaxTokens, RequestFields.KvCacheTooSmall },
        { "samples larger than the pool", RequestFields.N, RequestFields.KvCacheTooSmall },
        { "prompt larger than the pool", RequestFields.Prompt, RequestFields.KvCacheTooSmall },
        { "n zero", RequestFields.N, null },
        { "n over the limit", RequestFields.N, null },
        { "temperature", "temperature", null },
        { "stop id outside the vocabulary", RequestFields.StopTokenIds, null },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void EachRuleRefusesNamingItsField(string what, string param, string? code)
    {
        var (gate, request) = what switch
        {
            "empty prompt" => (Gate(), Request(promptTokens: 0)),
            "token outside the vocabulary" => (Gate(), Request() with { PromptTokens = [1, 512] }),
            "prompt fills the context" => (Gate(), Request(promptTokens: 64)),
            "prompt plus output over the context" => (Gate(), Request(promptTokens: 40, maxTokens: 25)),
            "no output" => (Gate(), Request(maxTokens: 0)),
            "output larger than the pool" => (Gate(maxModelLength: 1000), Request(maxTokens: 81)),
            "samples larger than the pool" => (Gate(), Request(maxTokens: 1, n: 16)),
            "prompt larger than the pool" => (Gate(maxModelLength: 1000), Request(promptTokens: 100, maxTokens: 1)),
            "n zero" => (Gate(), Request(n: 0)),
            "n over the limit" => (Gate(), Request(n: 17)),
            "temperature" => (Gate(), Request() with { Sampling = new SamplingParams { Temperature = 3f } }),
            _ => (Gate(), Request() with { StopTokenIds = [600] }),
        };
        var e = Assert.Throws<InvalidRequestException>(() => gate.Admit(request));
        Assert.Equal(param, e.Param);
        Assert.Equal(code, e.Code);
    }

    [Fact]
    public void WhatFitsIsAdmittedAndTheRefusalsSayHowMuchWouldFit()
    {
        var gate = Gate(maxModelLength: 1000);
        Assert.Equal(80, gate.Admit(Request(maxTokens: 80)).Request.MaxTokens);
        Assert.Contains("at most 80 tokens", Assert.Throws<InvalidRequestException>(() => gate.Admit(Request(maxTokens: 81))).Message, StringComparison.Ordinal);
        gate.Admit(Request(maxTokens: 16, n: 2));
        Assert.Contains("at most 16 tokens", Assert.Throws<InvalidRequestException>(() => gate.Admit(Request(maxTokens: 17, n: 2))).Message, StringComparison.Ordinal);

        // --kv-blocks 16 and n: 16 (issue 11): n is the cause, and the pool fits 2 samples.
        var e = Assert.Throws<InvalidRequestException>(() => gate.Admit(Request(maxTokens: 1, n: 16)));
        Assert.Equal(RequestFields.N, e.Param);
        Assert.Contains("at most 2 fit", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("at most 0", e.Message, StringComparison.Ordinal);
        gate.Admit(Request(maxTokens: 1, n: 2));
    }

    [Fact]
    public void APolicyTheCheckpointCannotRunIsRefused()
    {
        using var plain = new TempDirectory();
        foreach (string file in new[] { "config.json", "model.safetensors" })
        {
            File.Copy(Path.Combine(Fixtures.TinyCheckpoint("a"), file), plain.File(file));
        }

        using var model = ModelLoader.Load(plain.Path);
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 16 });
        var e = Assert.Throws<InvalidRequestException>(() => engine.Admission.Admit(Request() with { Policy = IterationPolicy.Always }));
        Assert.Equal(RequestFields.Policy, e.Param);
        Assert.Contains("needs a TaH checkpoint", e.Message, StringComparison.Ordinal);
        engine.Admission.Admit(Request() with { Policy = IterationPolicy.Never });
    }

    [Fact]
    public void AConstraintForAnotherVocabularyOrWithNoTokenToEndItIsRefused()
    {
        var tokenizer = TextTokenizer.Load(Path.Combine(Fixtures.Root, "models", "tah-arith"));
        var forDemo = new ConstraintCompiler(TokenVocabulary.Create(tokenizer, 280)).JsonObject(); // the demo model's logits
        var forTiny = new ConstraintCompiler(TokenVocabulary.Create(tokenizer, 512)).JsonObject();
        var e = Assert.Throws<InvalidRequestException>(() => Gate().Admit(Request() with { Constraint = forDemo }));
        Assert.Equal(RequestFields.ResponseFormat, e.Param);
        Assert.Contains("vocabulary of 280 logits, but this model has 512", e.Message, StringComparison.Ordinal);
        Assert.Same(forTiny, Gate().Admit(Request() with { Constraint = forTiny }).Request.Constraint);

        // The same checkpoint without an EOS id: only a stop token id can end the output.
        using var noEos = new TempDirectory();
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.TinyCheckpoint("a"), "config.json")))!;
        config["eos_token_id"] = null;
        File.WriteAllText(noEos.File("config.json"), config.ToJsonString());
        File.Copy(Path.Combine(Fixtures.TinyCheckpoint("a"), "model.safetensors"), noEos.File("model.safetensors"));
        using var model = ModelLoader.Load(noEos.Path);
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 16 });
        var request = Request() with { Policy = IterationPolicy.Never, Constraint = forTiny };
        e = Assert.Throws<InvalidRequestException>(() => engine.Admission.Admit(request));
        Assert.Equal(RequestFields.ResponseFormat, e.Param);
        Assert.Contains($"set '{RequestFields.StopTokenIds}'", e.Message, StringComparison.Ordinal);
        engine.Admission.Admit(request with { StopTokenIds = [2] });
        engine.Admission.Admit(request with { Constraint = null });
    }

    [Fact]
    public void TheServedModelDescribesTheCheckpoint()
    {
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 16, MaxModelLength = 64 });
        var served = engine.Served;
        Assert.Equal(2, served.MaxDepth);
        Assert.Equal(0.3748, served.DeciderThreshold); // tah_config.json's, not the state dict's 0.123
        Assert.Equal(512, served.VocabSize);
        Assert.Equal(64, served.MaxModelLength);
        Assert.Equal(4, served.Layers);
        Assert.Equal([PolicyKind.Decider, PolicyKind.Never, PolicyKind.Always], served.Policies);
        Assert.Equal(16, served.Kv.TotalBlocks);
        Assert.Equal(_model.EosTokenIds, served.EosTokenIds);
    }
}
