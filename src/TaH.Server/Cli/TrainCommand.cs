using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using TaH.Engine.Model;
using TaH.Engine.Tokenization;
using TaH.Training;
using TaH.Training.Data;
using TaH.Training.Evaluation;
using TaH.Training.Training;
using TorchSharp;

namespace TaH.Server.Cli;

/// <summary>
/// <c>tah train VERB</c>: the two-stage TaH training pipeline (label, stage1, stage2) and what the
/// demo needs around it (make-data, base, eval).
/// </summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var command = new Command("train", "train TaH models: oracle labels, stage 1 (backbone/LoRA), stage 2 (decider), and the demo model");
        command.Subcommands.Add(MakeData());
        command.Subcommands.Add(Base());
        command.Subcommands.Add(Label());
        command.Subcommands.Add(Stage1());
        command.Subcommands.Add(Stage2());
        command.Subcommands.Add(Eval());
        command.Subcommands.Add(Tradeoff());
        return command;
    }

    private static Command MakeData()
    {
        var output = new Option<string>("--out", "-o") { Description = "directory for tokenizer/, train.jsonl, val.jsonl, test.jsonl", Required = true };
        var train = new Option<int>("--train") { DefaultValueFactory = _ => 200_000 };
        var val = new Option<int>("--val") { Description = "validation problems (held-out loss, stage-2 threshold)", DefaultValueFactory = _ => 1000 };
        var test = new Option<int>("--test") { Description = "test problems (the README table; operands of 3+ digits)", DefaultValueFactory = _ => 1000 };
        var minDigits = new Option<int>("--min-digits") { DefaultValueFactory = _ => 1 };
        var maxDigits = new Option<int>("--max-digits") { DefaultValueFactory = _ => 4 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 7 };
        var command = new Command("make-data", "write the demo task (addition in a chat, most significant digit first) and its tokenizer")
        {
            output, train, val, test, minDigits, maxDigits, seed,
        };
        command.SetAction(r => CliAction.Run(() =>
        {
            string dir = r.GetValue(output)!;
            int lo = r.GetValue(minDigits), hi = r.GetValue(maxDigits), s = r.GetValue(seed);
            DemoTokenizer.Write(Path.Combine(dir, "tokenizer"));

            var (trainSet, valSet, testSet) = ArithmeticTask.Splits(r.GetValue(train), r.GetValue(val), r.GetValue(test), lo, hi, s);
            ArithmeticTask.WriteJsonl(Path.Combine(dir, "test.jsonl"), testSet);
            ArithmeticTask.WriteJsonl(Path.Combine(dir, "val.jsonl"), valSet);
            ArithmeticTask.WriteJsonl(Path.Combine(dir, "train.jsonl"), trainSet);
            Console.Error.WriteLine($"wrote {trainSet.Count} train, {valSet.Count} validation and {testSet.Count} test problems and tokenizer/ to {dir}");
            return 0;
        }));
        return command;
    }

    private static Command Base()
    {
        var tokenizer = new Option<string>("--tokenizer") { Description = "directory with tokenizer.json and tokenizer_config.json", Required = true };
        var data = DataOption();
        var heldOut = HeldOutOption("JSONL for the held-out loss");
        var output = OutOption();
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => 4 };
        var hidden = new Option<int>("--hidden") { DefaultValueFactory = _ => 128 };
        var intermediate = new Option<int>("--intermediate") { DefaultValueFactory = _ => 384 };
        var heads = new Option<int>("--heads") { DefaultValueFactory = _ => 4 };
        var kvHeads = new Option<int>("--kv-heads") { DefaultValueFactory = _ => 2 };
        var training = new TrainingOptions(steps: 3000, batch: 64, lr: 2e-3, saveEvery: 250);
        var command = new Command("base", "pretrain a small Qwen3 from scratch (the reference model of the demo)")
        {
            tokenizer, data, heldOut, output, layers, hidden, intermediate, heads, kvHeads,
        };
        training.AddTo(command);
        command.SetAction(r => CliAction.Run(() =>
        {
            training.Apply(r);
            var shape = DemoModel.Shape(0, r.GetValue(layers), r.GetValue(hidden), r.GetValue(intermediate), r.GetValue(heads), r.GetValue(kvHeads));
            Stages.TrainBase(shape, r.GetValue(tokenizer)!, r.GetValue(data)!, r.GetValue(heldOut), r.GetValue(output)!, training.Read(r), r.GetValue(training.Resume));
            return 0;
        }));
        return command;
    }

    private static Command Label()
    {
        var model = ModelOption("the frozen reference model");
        var data = DataOption();
        var output = new Option<string>("--out", "-o") { Description = "labels JSONL to write", Required = true };
        var batch = new Option<int>("--batch-size") { DefaultValueFactory = _ => 128 };
        var threads = ThreadsOption();
        var command = new Command("label", "oracle labels: a position is hard when the reference model's top-1 next token is wrong")
        {
            model, data, output, batch, threads,
        };
        command.SetAction(r => CliAction.Run(() =>
        {
            torch.set_num_threads(r.GetValue(threads));
            var (positions, hard) = Stages.Label(r.GetValue(model)!, r.GetValue(data)!, r.GetValue(output)!, r.GetValue(batch));
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"labelled {positions} supervised positions: {hard} hard ({100.0 * hard / Math.Max(1, positions):F1}%) -> {r.GetValue(output)}"));
            return 0;
        }));
        return command;
    }

    private static Command Stage1()
    {
        var model = ModelOption("the reference model to start from");
        var labels = LabelsOption();
        var heldOut = HeldOutOption("held-out labels JSONL for the held-out loss");
        var output = OutOption();
        var loraOnly = new Option<bool>("--lora-only") { Description = "train only the depth-2 LoRA, base frozen (TaH+); default: full fine-tuning" };
        var rank = new Option<int>("--lora-rank") { DefaultValueFactory = _ => 16 };
        var topK = new Option<int>("--topk") { Description = "soft-input and decider top-k", DefaultValueFactory = _ => 100 };
        var training = new TrainingOptions(steps: 1500, batch: 64, lr: 1e-3, saveEvery: 250);
        var command = new Command("stage1", "stage 1: next-token loss on the final logits, iterating exactly the oracle's hard positions")
        {
            model, labels, heldOut, output, loraOnly, rank, topK,
        };
        training.AddTo(command);
        command.SetAction(r => CliAction.Run(() =>
        {
            training.Apply(r);
            var shape = TaH.Engine.Config.Qwen3Config.Load(Path.Combine(r.GetValue(model)!, "config.json"));
            var settings = DemoModel.Settings(shape, r.GetValue(rank), r.GetValue(topK));
            Stages.Stage1(r.GetValue(model)!, settings, r.GetValue(labels)!, r.GetValue(heldOut), r.GetValue(output)!,
                training.Read(r), r.GetValue(loraOnly), r.GetValue(training.Resume));
            return 0;
        }));
        return command;
    }

    private static Command Stage2()
    {
        var model = ModelOption("the stage-1 checkpoint");
        var labels = LabelsOption();
        var heldOut = new Option<string>("--held-out") { Description = "held-out labels JSONL: held-out loss and the threshold choice", Required = true };
        var output = OutOption();
        var positiveWeight = new Option<double>("--pos-weight") { Description = "weight of the hard class in the BCE", DefaultValueFactory = _ => 5.4 };
        var training = new TrainingOptions(steps: 1000, batch: 64, lr: 1e-3, saveEvery: 250);
        var command = new Command("stage2", "stage 2: train the decider to imitate the oracle, everything else frozen; pick its threshold")
        {
            model, labels, heldOut, output, positiveWeight,
        };
        training.AddTo(command);
        command.SetAction(r => CliAction.Run(() =>
        {
            training.Apply(r);
            var (_, sweep) = Stages.Stage2(r.GetValue(model)!, r.GetValue(labels)!, r.GetValue(heldOut)!, r.GetValue(output)!,
                training.Read(r), r.GetValue(positiveWeight), r.GetValue(training.Resume));
            var best = sweep.Best;
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"threshold {best.Threshold:0.00}: precision {best.Precision:P1}, recall {best.Recall:P1}, F1 {best.F1:0.000}, {best.IterateShare:P1} of positions iterate (oracle: {(double)sweep.HardPositions / sweep.Positions:P1})"));
            return 0;
        }));
        return command;
    }

    private static Command Eval()
    {
        var model = ModelOption("the TaH checkpoint");
        var data = DataOption("chat JSONL of held-out problems");
        var reference = new Option<string?>("--reference") { Description = "reference model for the oracle labels (default: the model's own depth 1, which is the reference after --lora-only)" };
        var output = new Option<string?>("--json") { Description = "write the table as JSON" };
        var threads = ThreadsOption();
        var limit = new Option<int>("--limit") { Description = "evaluate the first N problems only (0: all)" };
        var weights = new WeightOptions();
        var command = new Command("eval", "exact-answer accuracy and depth for never, always, oracle and decider on held-out problems")
        {
            model, data, reference, output, threads, limit,
        };
        weights.AddTo(command);
        command.SetAction(r => CliAction.Run(() =>
        {
            torch.set_num_threads(r.GetValue(threads));
            string dir = r.GetValue(model)!;
            var tokenizer = TextTokenizer.Load(dir);
            var lines = File.ReadAllLines(r.GetValue(data)!).Where(l => !string.IsNullOrWhiteSpace(l));
            if (r.GetValue(limit) > 0)
            {
                lines = lines.Take(r.GetValue(limit));
            }

            var report = PolicyEvaluation.Run(dir, r.GetValue(reference), [.. lines], tokenizer, Console.Error, weights.Read(r, "cpu"));
            Console.Out.WriteLine(report.Markdown());
            if (r.GetValue(output) is { } path)
            {
                File.WriteAllText(path, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
            }

            return 0;
        }));
        return command;
    }

    private static Command Tradeoff()
    {
        var model = ModelOption("the TaH checkpoint");
        var data = DataOption("chat JSONL of held-out problems");
        var reference = new Option<string?>("--reference") { Description = "reference model for the Oracle's labels (default: the model's own depth 1)" };
        var targets = new Option<string>("--targets") { Description = "target depth-2 shares of the budgeted runs", DefaultValueFactory = _ => string.Join(",", BudgetTradeoff.DefaultTargets.Select(Invariant)) };
        var thresholds = new Option<string>("--thresholds") { Description = "fixed decider thresholds (the trained one is added)", DefaultValueFactory = _ => string.Join(",", BudgetTradeoff.DefaultThresholds.Select(Invariant)) };
        var output = new Option<string?>("--out", "-o") { Description = "directory for tradeoff.md, tradeoff.json and tradeoff.png (default: the model's)" };
        var threads = ThreadsOption();
        var limit = new Option<int>("--limit") { Description = "evaluate the first N problems only (0: all)" };
        var command = new Command("tradeoff", "exact-answer accuracy against depth-2 share: depth budgets at target shares, fixed thresholds and the Oracle (table and plot)")
        {
            model, data, reference, targets, thresholds, output, threads, limit,
        };
        command.SetAction(r => CliAction.Run(() =>
        {
            torch.set_num_threads(r.GetValue(threads));
            string dir = r.GetValue(model)!;
            var lines = File.ReadAllLines(r.GetValue(data)!).Where(l => !string.IsNullOrWhiteSpace(l));
            if (r.GetValue(limit) > 0)
            {
                lines = lines.Take(r.GetValue(limit));
            }

            var report = BudgetTradeoff.Run(dir, r.GetValue(reference), [.. lines], TextTokenizer.Load(dir),
                Shares(r.GetValue(targets)!, "--targets"), Shares(r.GetValue(thresholds)!, "--thresholds"), Console.Error);
            string outDir = r.GetValue(output) ?? dir;
            Directory.CreateDirectory(outDir);
            string table = report.Markdown();
            Console.Out.WriteLine(table);
            File.WriteAllText(Path.Combine(outDir, "tradeoff.md"), table);
            File.WriteAllText(Path.Combine(outDir, "tradeoff.json"), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
            report.Plot(Path.Combine(outDir, "tradeoff.png"));
            Console.Error.WriteLine($"wrote tradeoff.md, tradeoff.json and tradeoff.png to {outDir}");
            return 0;
        }));
        return command;
    }

    private static double[] Shares(string list, string option) =>
        [.. list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(part =>
            double.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v >= 0 && v <= 1
                ? v
                : throw new ArgumentException($"{option}: '{part}' is not a number in [0, 1]"))];

    private static string Invariant(double v) => v.ToString(CultureInfo.InvariantCulture);

    private static Option<string> ModelOption(string what) => new("--model", "-m") { Description = what, Required = true };

    private static Option<string> DataOption(string what = "dataset JSONL: {\"messages\": [...]} chat or {\"text\": ...} lines") =>
        new("--data") { Description = what, Required = true };

    private static Option<string> LabelsOption() => new("--labels") { Description = "labels JSONL written by 'tah train label'", Required = true };

    private static Option<string?> HeldOutOption(string what) => new("--held-out") { Description = what };

    private static Option<string> OutOption() => new("--out", "-o") { Description = "checkpoint directory to write", Required = true };

    private static Option<int> ThreadsOption() => new("--threads") { Description = "CPU threads for libtorch", DefaultValueFactory = _ => 2 };

    /// <summary>The optimisation flags every training verb takes, with per-verb defaults.</summary>
    private sealed class TrainingOptions(int steps, int batch, double lr, int saveEvery)
    {
        public Option<int> Steps { get; } = new("--steps") { DefaultValueFactory = _ => steps };

        public Option<int> BatchSize { get; } = new("--batch-size") { DefaultValueFactory = _ => batch };

        public Option<double> LearningRate { get; } = new("--lr") { Description = "peak learning rate (AdamW)", DefaultValueFactory = _ => lr };

        public Option<double> WeightDecay { get; } = new("--weight-decay") { DefaultValueFactory = _ => 0.01 };

        public Option<double> WarmupRatio { get; } = new("--warmup-ratio") { DefaultValueFactory = _ => 0.03 };

        public Option<double> MinLrRatio { get; } = new("--min-lr-ratio") { Description = "cosine floor as a share of the peak", DefaultValueFactory = _ => 0.1 };

        public Option<double> MaxGradNorm { get; } = new("--max-grad-norm") { DefaultValueFactory = _ => 1.0 };

        public Option<int> Seed { get; } = new("--seed") { DefaultValueFactory = _ => 1 };

        public Option<int> SaveEvery { get; } = new("--save-every") { Description = "steps between resumable checkpoints (OUT/checkpoint)", DefaultValueFactory = _ => saveEvery };

        public Option<int> EvalEvery { get; } = new("--eval-every") { DefaultValueFactory = _ => 100 };

        public Option<int> Threads { get; } = ThreadsOption();

        public Option<bool> Resume { get; } = new("--resume") { Description = "continue from OUT/checkpoint when there is one" };

        public void AddTo(Command command)
        {
            foreach (var option in new Option[] { Steps, BatchSize, LearningRate, WeightDecay, WarmupRatio, MinLrRatio, MaxGradNorm, Seed, SaveEvery, EvalEvery, Threads, Resume })
            {
                command.Options.Add(option);
            }
        }

        public void Apply(ParseResult r) => torch.set_num_threads(r.GetValue(Threads));

        public TrainOptions Read(ParseResult r) => new()
        {
            Steps = r.GetValue(Steps),
            BatchSize = r.GetValue(BatchSize),
            LearningRate = r.GetValue(LearningRate),
            WeightDecay = r.GetValue(WeightDecay),
            WarmupRatio = r.GetValue(WarmupRatio),
            MinLrRatio = r.GetValue(MinLrRatio),
            MaxGradNorm = r.GetValue(MaxGradNorm),
            Seed = r.GetValue(Seed),
            SaveEvery = r.GetValue(SaveEvery),
            EvalEvery = r.GetValue(EvalEvery),
        };
    }
}
