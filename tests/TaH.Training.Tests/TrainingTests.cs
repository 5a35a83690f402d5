using TaH.Engine.Tokenization;
using TaH.Training.Data;
using TaH.Training.Model;
using TaH.Training.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TaH.Training.Tests;

/// <summary>The stages train what they should, and what they write comes back as it was.</summary>
public class TrainingTests
{
    private static readonly TrainOptions Quick = new() { Steps = 30, BatchSize = 8, LearningRate = 3e-3, WarmupRatio = 0.1, SaveEvery = 0, EvalEvery = 1000 };

    [Fact]
    public void AFewStage1StepsReduceTheLossOnATinyBatch()
    {
        var tokenizer = TextTokenizer.Load(Helpers.TokenizerDirectory);
        var batch = Helpers.Problems(tokenizer, 8, seed: 1)
            .Select(e => e with { Hard = [.. e.Supervised.Select((s, i) => s && i % 2 == 0)] }).ToList();
        using var model = Helpers.TinyTaH(tokenizer.VocabSize);
        model.SetTrainable(baseWeights: true, lora: true, decider: false);
        using var dir = new TempDirectory();
        var trainer = new Trainer("test", Quick, Stages.PadId(tokenizer));

        double before = trainer.HeldOutLoss(model, batch, Losses.Stage1);
        trainer.Run(model, batch, null, Losses.Stage1, dir.Path, (_, _) => { }, resume: false);
        double after = trainer.HeldOutLoss(model, batch, Losses.Stage1);

        Assert.True(after < 0.7 * before, $"stage-1 loss went from {before:F3} to {after:F3}");
    }

    [Fact]
    public void ACheckpointWrittenByTheTrainerLoadsBackBitExactly()
    {
        using var dir = new TempDirectory();
        using var model = Helpers.TinyTaH(vocab: 64);
        model.SetThreshold(0.8125);
        TaHCheckpoint.Save(model, dir.Path, Helpers.TokenizerDirectory, eosTokenId: 63);

        using var loaded = TaHCheckpoint.Load(dir.Path);
        AssertSameWeights(model.Base, loaded.Base);
        AssertSameWeights(model.Lora, loaded.Lora);
        AssertSameWeights(model.Decider, loaded.Decider);
        Assert.Equal(0.8125, loaded.TaH!.Decider.Threshold);
        Assert.Equal(model.TaH!.Lora.Scaling, loaded.TaH.Lora.Scaling);
        Assert.Equal(model.Config with { TorchDtype = "float32" }, loaded.Config with { EosTokenIds = model.Config.EosTokenIds });

        // Written again, every weight file is the same bytes.
        using var again = new TempDirectory();
        TaHCheckpoint.Save(loaded, again.Path, Helpers.TokenizerDirectory, eosTokenId: 63);
        foreach (string file in new[] { "model.safetensors", "lora/adapter_model.safetensors", "iter_decider.bin", "tah_config.json", "config.json" })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir.Path, file)), File.ReadAllBytes(Path.Combine(again.Path, file)));
        }
    }

    [Fact]
    public void Stage2LeavesTheBackboneUnchangedAndTrainsTheDecider()
    {
        using var dir = new TempDirectory();
        var tokenizer = TextTokenizer.Load(Helpers.TokenizerDirectory);
        string stage1 = dir.Sub("stage1");
        using (var model = Helpers.TinyTaH(tokenizer.VocabSize))
        {
            TaHCheckpoint.Save(model, stage1, Helpers.TokenizerDirectory, Stages.EosId(tokenizer));
        }

        // Oracle labels from the stage-1 model's own depth 1.
        using (var reference = TaHCheckpoint.Load(stage1))
        {
            OracleLabels.Write(dir.Sub("train.jsonl"), OracleLabels.Label(reference, Helpers.Problems(tokenizer, 24, seed: 2), Stages.PadId(tokenizer), 8));
            OracleLabels.Write(dir.Sub("val.jsonl"), OracleLabels.Label(reference, Helpers.Problems(tokenizer, 8, seed: 3), Stages.PadId(tokenizer), 8));
        }

        var (log, sweep) = Stages.Stage2(stage1, dir.Sub("train.jsonl"), dir.Sub("val.jsonl"), dir.Sub("stage2"), Quick with { Steps = 10 }, 5.4, resume: false);

        using var before = TaHCheckpoint.Load(stage1);
        using var after = TaHCheckpoint.Load(dir.Sub("stage2"));
        AssertSameWeights(before.Base, after.Base);
        AssertSameWeights(before.Lora, after.Lora);
        Assert.Contains(after.Decider, kv => !SameBits(kv.Value, before.Decider[kv.Key]));
        Assert.Equal(sweep.Best.Threshold, after.TaH!.Decider.Threshold);
        Assert.Equal(10, log.Train.Count);
        Assert.True(File.Exists(dir.Sub("stage2/decider.png")) && File.Exists(dir.Sub("stage2/loss.png")));
    }

    [Fact]
    public void AResumedRunEndsWhereAnUninterruptedOneDoes()
    {
        var tokenizer = TextTokenizer.Load(Helpers.TokenizerDirectory);
        var data = Helpers.Problems(tokenizer, 12, seed: 4).Select(e => e with { Hard = [.. e.Supervised] }).ToList();
        var options = Quick with { Steps = 6, SaveEvery = 3 };
        using var dir = new TempDirectory();

        // An uninterrupted run that leaves its step-3 checkpoint behind...
        string outDir = dir.Sub("run");
        using var straight = Helpers.TinyTaH(tokenizer.VocabSize);
        straight.SetTrainable(baseWeights: false, lora: true, decider: false);
        new Trainer("straight", options, Stages.PadId(tokenizer)).Run(straight, data, null, Losses.Stage1, outDir,
            (m, d) => TaHCheckpoint.Save(m, d, null, 0), resume: false);

        // ...and the same run resumed from those files.
        using var resumed = TaHCheckpoint.Load(Trainer.ResumableCheckpoint(outDir)!);
        resumed.SetTrainable(baseWeights: false, lora: true, decider: false);
        var log = new Trainer("resumed", options, Stages.PadId(tokenizer)).Run(resumed, data, null, Losses.Stage1, outDir, (_, _) => { }, resume: true);

        Assert.Equal(6, log.CompletedSteps);
        Assert.Equal(6, log.Train.Count);
        AssertSameWeights(straight.Lora, resumed.Lora);
    }

    private static bool SameBits(Tensor a, Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();

    private static void AssertSameWeights(Dictionary<string, Parameter> expected, Dictionary<string, Parameter> actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, tensor) in expected)
        {
            Assert.True(SameBits(tensor, actual[name]), $"{name} differs");
        }
    }
}
