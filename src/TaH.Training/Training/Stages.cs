using System.Text.Json;
using TaH.Engine.Config;
using TaH.Engine.Tokenization;
using TaH.Training.Data;
using TaH.Training.Evaluation;
using TaH.Training.Model;
using TaH.Training.Reporting;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Training.Training;

/// <summary>
/// The pipeline, one method per verb of <c>tah train</c>: pretrain a reference model (base), label a
/// dataset with it (label), train the depth-2 path under the oracle policy (stage1), train the
/// decider to imitate the oracle (stage2). Each writes a checkpoint in the released layout, with
/// its loss curves (training_log.json, loss.png) beside it.
/// </summary>
public static class Stages
{
    /// <summary>Pretrains a plain Qwen3 from scratch on next-token loss: the reference model of the demo.</summary>
    public static TrainingLog TrainBase(Qwen3Config shape, string tokenizerDir, string dataPath, string? heldOutPath,
        string outDir, TrainOptions options, bool resume)
    {
        var tokenizer = TextTokenizer.Load(tokenizerDir);
        var config = shape with { VocabSize = tokenizer.VocabSize, EosTokenIds = [EosId(tokenizer)] };
        var train = Example.ReadJsonl(dataPath, tokenizer);
        var heldOut = heldOutPath is null ? null : Example.ReadJsonl(heldOutPath, tokenizer);
        using var model = Trainer.ResumableCheckpoint(outDir) is { } checkpoint && resume
            ? TaHCheckpoint.Load(checkpoint)
            : TaHCheckpoint.NewBase(config, options.Seed);
        model.SetTrainable(baseWeights: true, lora: false, decider: false);
        return RunAndSave("base", model, train, heldOut, Losses.Base, outDir, tokenizer, options, resume);
    }

    /// <summary>Labels every supervised position of a dataset with the frozen reference model's mistakes.</summary>
    public static (int Positions, int Hard) Label(string referenceDir, string dataPath, string outPath, int batchSize)
    {
        var tokenizer = TextTokenizer.Load(referenceDir);
        var examples = Example.ReadJsonl(dataPath, tokenizer);
        using var reference = TaHCheckpoint.Load(referenceDir);
        var progress = new ProgressBar("label", examples.Count);
        int done = 0;
        var labelled = OracleLabels.Label(reference, examples, PadId(tokenizer), batchSize, n => progress.Update(done += n));
        progress.Done();
        OracleLabels.Write(outPath, labelled);
        int positions = labelled.Sum(e => e.Supervised.Count(s => s));
        int hard = labelled.Sum(e => e.Hard!.Count(h => h));
        return (positions, hard);
    }

    /// <summary>
    /// Stage 1: from the reference model, add a LoRA and a decider and train with the oracle policy
    /// (exactly the hard positions take depth 2). <paramref name="loraOnly"/> freezes the base
    /// (TaH+); otherwise every base weight trains too.
    /// </summary>
    public static TrainingLog Stage1(string referenceDir, TaHSettings settings, string labelsPath, string? heldOutLabelsPath,
        string outDir, TrainOptions options, bool loraOnly, bool resume)
    {
        var tokenizer = TextTokenizer.Load(referenceDir);
        var train = OracleLabels.Read(labelsPath);
        var heldOut = heldOutLabelsPath is null ? null : OracleLabels.Read(heldOutLabelsPath);
        TrainableTaH model;
        if (Trainer.ResumableCheckpoint(outDir) is { } checkpoint && resume)
        {
            model = TaHCheckpoint.Load(checkpoint);
        }
        else
        {
            // The TaH model takes over the reference's weights (and their disposal).
            model = TaHCheckpoint.WithNewTaH(TaHCheckpoint.Load(referenceDir), settings, options.Seed);
        }

        using (model)
        {
            model.SetTrainable(baseWeights: !loraOnly, lora: true, decider: false);
            return RunAndSave("stage1", model, train, heldOut, Losses.Stage1, outDir, tokenizer, options, resume);
        }
    }

    /// <summary>
    /// Stage 2: everything but the decider frozen; BCE against the oracle label with the positive
    /// class weighted. Then the threshold with the best F1 on the held-out labels goes into
    /// tah_config.json, and the precision/recall sweep is written as decider.png and decider.json.
    /// </summary>
    public static (TrainingLog Log, ThresholdSweep Sweep) Stage2(string stage1Dir, string labelsPath, string heldOutLabelsPath,
        string outDir, TrainOptions options, double positiveWeight, bool resume)
    {
        var tokenizer = TextTokenizer.Load(stage1Dir);
        var train = OracleLabels.Read(labelsPath);
        var heldOut = OracleLabels.Read(heldOutLabelsPath);
        using var model = TaHCheckpoint.Load(Trainer.ResumableCheckpoint(outDir) is { } checkpoint && resume ? checkpoint : stage1Dir);
        model.SetTrainable(baseWeights: false, lora: false, decider: true);
        var log = RunAndSave("stage2", model, train, heldOut, Losses.Stage2(positiveWeight), outDir, tokenizer, options, resume);

        var sweep = ThresholdSweep.Measure(model, heldOut, PadId(tokenizer), options.BatchSize);
        var best = sweep.Best;
        model.SetThreshold(best.Threshold);
        TaHCheckpoint.Save(model, outDir, tokenizer.Directory, EosId(tokenizer));
        File.WriteAllText(Path.Combine(outDir, "decider.json"), JsonSerializer.Serialize(sweep, new JsonSerializerOptions { WriteIndented = true }));
        Plots.DeciderCurves(sweep, Path.Combine(outDir, "decider.png"));
        return (log, sweep);
    }

    private static TrainingLog RunAndSave(string name, TrainableTaH model, List<Example> train, List<Example>? heldOut,
        Trainer.LossFunction loss, string outDir, TextTokenizer tokenizer, TrainOptions options, bool resume)
    {
        Directory.CreateDirectory(outDir);
        int eos = EosId(tokenizer);
        var trainer = new Trainer(name, options, PadId(tokenizer));
        var log = trainer.Run(model, train, heldOut, loss, outDir,
            (m, dir) => TaHCheckpoint.Save(m, dir, tokenizer.Directory, eos), resume);
        TaHCheckpoint.Save(model, outDir, tokenizer.Directory, eos);
        File.WriteAllText(Path.Combine(outDir, "training_log.json"), JsonSerializer.Serialize(log));
        Plots.LossCurves(log, $"{name} loss", Path.Combine(outDir, "loss.png"));
        string checkpoint = Path.Combine(outDir, Trainer.CheckpointFolder);
        if (Directory.Exists(checkpoint))
        {
            Directory.Delete(checkpoint, recursive: true);
        }

        return log;
    }

    public static int PadId(TextTokenizer tokenizer) => tokenizer.PadTokenId ?? EosId(tokenizer);

    public static int EosId(TextTokenizer tokenizer) =>
        tokenizer.EosTokenId ?? throw new ArgumentException($"{tokenizer.Directory}: tokenizer_config.json names no eos_token");
}
