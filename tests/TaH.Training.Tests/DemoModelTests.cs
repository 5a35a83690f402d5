using TaH.Engine.Generation;
using TaH.Engine.Kv;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Engine.Tokenization;
using TaH.Training.Data;

namespace TaH.Training.Tests;

/// <summary>
/// The committed demo checkpoint, run the way the server runs a chat request: the checkpoint's
/// tokenizer and chat template, the engine, the model's own generation defaults and its decider.
/// </summary>
public class DemoModelTests
{
    /// <summary>The demo recipe's splits (scripts/train-demo.sh runs make-data with these defaults).</summary>
    private static readonly Lazy<(List<AdditionProblem> Train, List<AdditionProblem> Validation, List<AdditionProblem> Test)> Splits =
        new(() => ArithmeticTask.Splits(200_000, 1000, 1000, 1, 4, 7));

    [Fact]
    public void TheDemoCheckpointAnswersAHeldOutQuestionWithSelectiveThinking()
    {
        var problem = new AdditionProblem(HeldOutA, HeldOutB);
        Assert.Contains(problem, Splits.Value.Test);
        Assert.DoesNotContain(problem, Splits.Value.Train);

        string dir = DemoModel.DefaultDirectory ?? throw new InvalidOperationException("models/tah-arith is missing");
        using var model = ModelLoader.Load(dir);
        var tokenizer = TextTokenizer.Load(dir);
        var (answer, depths) = Chat(model, tokenizer, problem.Question, IterationPolicy.Decider);
        var (onePass, _) = Chat(model, tokenizer, problem.Question, IterationPolicy.Never);

        Assert.Equal(problem.Answer, answer);
        Assert.Equal(2, depths[0]);
        Assert.All(depths[1..], d => Assert.Equal(1, d));
        Assert.NotEqual(problem.Answer, onePass);
    }

    [Fact]
    public void TheDemoCheckpointIteratesOnlySomeTokensAndAnswersMostHeldOutQuestions()
    {
        string dir = DemoModel.DefaultDirectory ?? throw new InvalidOperationException("models/tah-arith is missing");
        using var model = ModelLoader.Load(dir);
        var tokenizer = TextTokenizer.Load(dir);
        int correct = 0, tokens = 0, deep = 0;
        foreach (var problem in Splits.Value.Test.Take(40))
        {
            var (answer, depths) = Chat(model, tokenizer, problem.Question, IterationPolicy.Decider);
            correct += answer == problem.Answer ? 1 : 0;
            tokens += depths.Length;
            deep += depths.Count(d => d == 2);
        }

        Assert.True(correct >= MinimumCorrectOf40, $"{correct}/40 held-out problems answered");
        Assert.InRange((double)deep / tokens, 0.01, 0.6);
    }

    // Set from the committed checkpoint. 756+140: whether 56+40 reaches 100 decides the leading
    // digit; one pass writes 996, the decider sends that digit to depth 2, which writes 896.
    private const long HeldOutA = 756;
    private const long HeldOutB = 140;

    // It answers 35 of the first 40 test problems; the margin absorbs CPU-dependent rounding.
    private const int MinimumCorrectOf40 = 32;

    /// <summary>A user turn through the chat template, generated with the model's sampling defaults.</summary>
    private static (string Answer, int[] Depths) Chat(TaHModel model, TextTokenizer tokenizer, string question, IterationPolicy policy)
    {
        string prompt = tokenizer.ChatTemplate!.Render([new ChatMessage("user", question)], addGenerationPrompt: true);
        var request = new GenerationRequest
        {
            PromptTokens = tokenizer.Encode(prompt),
            MaxTokens = 16,
            Policy = policy,
            Sampling = new SamplingParams { Temperature = (float)(model.Generation.Temperature ?? 1.0) },
        };
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = KvBudget.PoolFor(request, model.MaxDepth) });
        var events = engine.Generate(request).ToList();
        Assert.Equal(FinishReason.Stop, events[^1].Finish);
        return (tokenizer.Decode([.. events.Select(e => e.Token)], skipSpecialTokens: true), [.. events.Select(e => e.Depth)]);
    }
}
