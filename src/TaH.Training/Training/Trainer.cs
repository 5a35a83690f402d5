using System.Diagnostics;
using System.Text.Json;
using TaH.Training.Data;
using TaH.Training.Model;
using TaH.Training.Reporting;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Training.Training;

/// <summary>One point of a loss curve.</summary>
public sealed record LossPoint(int Step, double Loss);

/// <summary>What a run leaves behind: the loss curves (also written to training_log.json).</summary>
public sealed class TrainingLog
{
    public List<LossPoint> Train { get; init; } = [];

    public List<LossPoint> HeldOut { get; init; } = [];

    public int CompletedSteps { get; set; }
}

/// <summary>
/// The optimisation loop every stage shares: AdamW over the model's trainable parameters, warmup +
/// cosine schedule, gradient clipping, a progress bar, held-out loss, and resumable checkpoints in
/// <c>OUT/checkpoint</c> (model in the released layout, optimizer state, step and curves).
/// </summary>
public sealed class Trainer(string name, TrainOptions options, int padId)
{
    public const string CheckpointFolder = "checkpoint";

    private int[]? _order;
    private int _orderEpoch = -1;

    /// <summary>
    /// The loss of one batch: a scalar to minimise. Called in train mode with gradients on, and
    /// under no_grad in eval mode for the held-out loss.
    /// </summary>
    public delegate Tensor LossFunction(TrainableTaH model, Batch batch);

    /// <summary>The checkpoint a run can resume from, or null.</summary>
    public static string? ResumableCheckpoint(string outDir)
    {
        string dir = Path.Combine(outDir, CheckpointFolder);
        return File.Exists(Path.Combine(dir, "trainer_state.json")) ? dir : null;
    }

    /// <summary>
    /// Trains <paramref name="model"/> for the configured steps (from the checkpoint's step when
    /// resuming; the caller loaded the model from it). <paramref name="save"/> writes the model in
    /// the released layout into a directory.
    /// </summary>
    public TrainingLog Run(TrainableTaH model, IReadOnlyList<Example> train, IReadOnlyList<Example>? heldOut,
        LossFunction loss, string outDir, Action<TrainableTaH, string> save, bool resume)
    {
        var parameters = model.TrainableParameters.ToList();
        using var optimizer = optim.AdamW(parameters, options.LearningRate, 0.9, 0.999, 1e-8, options.WeightDecay, false, false);
        var log = new TrainingLog();
        string checkpoint = Path.Combine(outDir, CheckpointFolder);
        if (resume && ResumableCheckpoint(outDir) is not null)
        {
            optimizer.load_state_dict(Path.Combine(checkpoint, "optimizer.bin"));
            log = JsonSerializer.Deserialize<TrainingLog>(File.ReadAllText(Path.Combine(checkpoint, "trainer_state.json")))!;
            Console.Error.WriteLine($"{name}: resuming at step {log.CompletedSteps} from {checkpoint}");
        }

        var progress = new ProgressBar(name, options.Steps, log.CompletedSteps);
        var clock = Stopwatch.StartNew();
        long tokensSeen = 0;
        double smoothed = double.NaN;
        for (int step = log.CompletedSteps; step < options.Steps; step++)
        {
            using (var scope = NewDisposeScope())
            {
                using var batch = Batch.Make(BatchAt(train, step), padId);

                // Dropout draws from a per-step seed, so a resumed run repeats the uninterrupted one.
                random.manual_seed((options.Seed * 1_000_003L) + step);
                model.IsTraining = true;
                optimizer.zero_grad();
                var value = loss(model, batch);
                value.backward();
                nn.utils.clip_grad_norm_(parameters, options.MaxGradNorm);
                foreach (var group in optimizer.ParamGroups)
                {
                    group.LearningRate = options.LearningRateAt(step);
                }

                optimizer.step();
                double current = value.item<float>();
                smoothed = double.IsNaN(smoothed) ? current : (0.95 * smoothed) + (0.05 * current);
                log.Train.Add(new LossPoint(step + 1, current));
                tokensSeen += batch.Tokens;
            }

            log.CompletedSteps = step + 1;
            bool last = step + 1 == options.Steps;
            if (heldOut is { Count: > 0 } && ((step + 1) % options.EvalEvery == 0 || last))
            {
                double held = HeldOutLoss(model, heldOut, loss);
                log.HeldOut.Add(new LossPoint(step + 1, held));
                progress.Note($"step {step + 1}: held-out loss {held:F4}");
            }

            progress.Update(step + 1, smoothed, tokensSeen / clock.Elapsed.TotalSeconds);
            if (!last && options.SaveEvery > 0 && (step + 1) % options.SaveEvery == 0)
            {
                save(model, checkpoint);
                optimizer.save_state_dict(Path.Combine(checkpoint, "optimizer.bin"));
                File.WriteAllText(Path.Combine(checkpoint, "trainer_state.json"), JsonSerializer.Serialize(log));
            }
        }

        progress.Done();
        model.IsTraining = false;
        return log;
    }

    /// <summary>Mean loss over the held-out examples, dropout off, no gradients.</summary>
    public double HeldOutLoss(TrainableTaH model, IReadOnlyList<Example> heldOut, LossFunction loss)
    {
        bool wasTraining = model.IsTraining;
        model.IsTraining = false;
        double sum = 0;
        int batches = 0;
        using (no_grad())
        {
            foreach (var chunk in heldOut.Chunk(options.BatchSize))
            {
                using var scope = NewDisposeScope();
                using var batch = Batch.Make(chunk, padId);
                sum += loss(model, batch).item<float>();
                batches++;
            }
        }

        model.IsTraining = wasTraining;
        return sum / Math.Max(1, batches);
    }

    /// <summary>The examples of one step: epochs of seeded shuffles, so a resumed run sees the same batches.</summary>
    private List<Example> BatchAt(IReadOnlyList<Example> data, int step)
    {
        var batch = new List<Example>(options.BatchSize);
        long first = (long)step * options.BatchSize;
        for (long k = first; k < first + options.BatchSize; k++)
        {
            int epoch = (int)(k / data.Count);
            if (_order is null || _orderEpoch != epoch)
            {
                _order = [.. Enumerable.Range(0, data.Count)];
                new Random(options.Seed + (epoch * 7919)).Shuffle(_order);
                _orderEpoch = epoch;
            }

            batch.Add(data[_order[(int)(k % data.Count)]]);
        }

        return batch;
    }
}
