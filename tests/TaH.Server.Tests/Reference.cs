using System.Text.Json.Nodes;
using TaH.Engine.Generation;
using TaH.Engine.Kv;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Engine.Tokenization;

namespace TaH.Server.Tests;

/// <summary>
/// What the engine itself produces for a prompt, run directly (no server): the expected values
/// of the end-to-end tests.
/// </summary>
internal static class Reference
{
    private static readonly Lazy<TaHModel> LazyModel = new(() => ModelLoader.Load(TestModel.Directory));
    private static readonly Lazy<TextTokenizer> LazyTokenizer = new(() => TextTokenizer.Load(TestModel.Directory));

    public static TextTokenizer Tokenizer => LazyTokenizer.Value;

    public static TaHModel Model => LazyModel.Value;

    /// <summary>The prompt ids the Qwen3 template and tokenizer make of a conversation.</summary>
    public static IReadOnlyList<int> ChatPrompt(IReadOnlyList<ChatMessage> messages, IReadOnlyList<JsonNode>? tools = null, bool? enableThinking = null) =>
        Tokenizer.Encode(Tokenizer.ChatTemplate!.Render(messages, tools, addGenerationPrompt: true, enableThinking));

    public static IReadOnlyList<int> ChatPrompt(string user) => ChatPrompt([ChatMessage.User(user)]);

    /// <summary>Greedy decoding in the engine alone.</summary>
    public static Output Greedy(IReadOnlyList<int> prompt, int maxTokens, IterationPolicy? policy = null, int? logprobs = null)
    {
        using var engine = new InferenceEngine(Model, new EngineOptions { KvBlocks = KvBudget.PoolFor(new GenerationRequest { PromptTokens = prompt, MaxTokens = maxTokens }, Model.MaxDepth) });
        var events = engine.Generate(new GenerationRequest
        {
            PromptTokens = prompt,
            MaxTokens = maxTokens,
            Policy = policy ?? IterationPolicy.Decider,
            Sampling = SamplingParams.Greedy with { Logprobs = logprobs },
        }).ToList();
        return new Output(events, Tokenizer.Decode([.. events.Select(e => e.Token)], skipSpecialTokens: true));
    }

    public sealed record Output(IReadOnlyList<TokenEvent> Events, string Text)
    {
        public int[] Depths => [.. Events.Select(e => e.Depth)];

        public int Depth2 => Events.Count(e => e.Depth >= 2);

        /// <summary>Each token's text on its own (for picking strings that straddle token boundaries).</summary>
        public string[] Pieces => [.. Events.Select(e => Tokenizer.Decode([e.Token], skipSpecialTokens: true))];
    }
}
