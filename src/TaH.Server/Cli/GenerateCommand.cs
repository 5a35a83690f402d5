using System.CommandLine;
using System.Diagnostics;
using TaH.Engine.Generation;
using TaH.Engine.Kv;
using TaH.Engine.Model;
using TaH.Engine.Tokenization;

namespace TaH.Server.Cli;

/// <summary><c>tah generate</c>: streams a completion to the terminal, each token coloured by its depth.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model(required: false);
        var prompt = new Option<string>("--prompt", "-p") { Description = "the prompt text", Required = true };
        var chat = new Option<bool>("--chat") { Description = "wrap the prompt as a user turn with the model's chat template" };
        var system = new Option<string?>("--system") { Description = "system message (with --chat)" };
        var noThink = new Option<bool>("--no-think") { Description = "disable Qwen3 thinking (enable_thinking=false, with --chat)" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { DefaultValueFactory = _ => 256 };
        var policy = CommonOptions.Policy();
        var threshold = CommonOptions.Threshold();
        var color = new Option<string>("--color") { Description = "auto, always or never", DefaultValueFactory = _ => "auto" };
        var sampling = new SamplingOptions();
        var device = new Option<string>("--device") { Description = "cpu (fp32) or cuda[:N] (bf16, CUDA kernels)", DefaultValueFactory = _ => "cpu" };
        var weights = new WeightOptions();

        var command = new Command("generate", "generate text from a prompt, colouring each token by the number of passes it took")
        {
            model, prompt, chat, system, noThink, maxTokens, policy, threshold, color, device,
        };
        weights.AddTo(command);
        sampling.AddTo(command);
        command.SetAction(result => CliAction.Run(() =>
        {
            using var tah = CommonOptions.Load(CommonOptions.ModelOrDemo(result.GetValue(model)), weights.Read(result, result.GetValue(device)!));
            var tokenizer = TextTokenizer.Load(tah.Directory);
            string text = result.GetValue(prompt)!;
            if (result.GetValue(chat))
            {
                var template = tokenizer.ChatTemplate
                    ?? throw new ArgumentException($"{tah.Directory} has no chat template in tokenizer_config.json; drop --chat");
                var messages = new List<ChatMessage>();
                if (result.GetValue(system) is { } sys)
                {
                    messages.Add(new ChatMessage("system", sys));
                }

                messages.Add(new ChatMessage("user", text));
                text = template.Render(messages, tools: null, addGenerationPrompt: true, enableThinking: result.GetValue(noThink) ? false : null);
            }

            var request = new GenerationRequest
            {
                PromptTokens = tokenizer.Encode(text),
                MaxTokens = result.GetValue(maxTokens),
                Policy = CommonOptions.ReadPolicy(result, policy, threshold),
                Sampling = sampling.Read(result, tah.Generation),
            };

            bool useColor = result.GetValue(color) switch
            {
                "always" => true,
                "never" => false,
                _ => !Console.IsOutputRedirected && Environment.GetEnvironmentVariable("NO_COLOR") is null,
            };

            using var engine = new InferenceEngine(tah, new EngineOptions { KvBlocks = KvBudget.PoolFor(request, tah.MaxDepth) });
            var detokenizer = tokenizer.CreateDetokenizer(skipSpecialTokens: true);
            var stdout = Console.Out;
            if (useColor)
            {
                stdout.WriteLine(DepthColors.Legend(tah.MaxDepth));
            }

            int tokens = 0, deep = 0;
            var clock = Stopwatch.StartNew();
            TimeSpan? firstToken = null;
            FinishReason? finish = null;
            foreach (var e in engine.Generate(request))
            {
                firstToken ??= clock.Elapsed;
                tokens++;
                deep += e.Depth > 1 ? 1 : 0;
                string piece = detokenizer.Add(e.Token);
                stdout.Write(useColor ? DepthColors.Paint(piece, e.Depth) : piece);
                stdout.Flush();
                finish = e.Finish;
            }

            stdout.Write(detokenizer.Flush());
            stdout.WriteLine();
            var decode = clock.Elapsed - (firstToken ?? TimeSpan.Zero);
            double rate = tokens > 1 ? (tokens - 1) / decode.TotalSeconds : 0;
            Console.Error.WriteLine(
                $"[{tokens} tokens, {(tokens == 0 ? 0 : 100.0 * deep / tokens):F1}% at depth 2+, {rate:F2} tokens/s decode, " +
                $"first token after {(firstToken ?? TimeSpan.Zero).TotalMilliseconds:F0} ms ({request.PromptTokens.Count} prompt tokens), " +
                $"policy {request.Policy}, finish {finish?.ToString().ToLowerInvariant() ?? "none"}]");
            return 0;
        }));
        return command;
    }
}

/// <summary>The colours of the reference demo: depth 1 plain, 2 green, 3 blue, 4 red, 5 magenta, 6 yellow, deeper cyan.</summary>
internal static class DepthColors
{
    private const string Reset = "\u001b[0m";

    public static string Code(int depth) =>
        depth switch
        {
            1 => Reset,
            2 => "\u001b[92m",
            3 => "\u001b[94m",
            4 => "\u001b[91m",
            5 => "\u001b[95m",
            6 => "\u001b[93m",
            _ => "\u001b[96m",
        };

    public static string Paint(string text, int depth) => text.Length == 0 || depth == 1 ? text : $"{Code(depth)}{text}{Reset}";

    public static string Legend(int maxDepth) =>
        "depth: " + string.Join(" ", Enumerable.Range(1, Math.Max(2, maxDepth)).Select(d => Paint($"{d}", d)));
}
