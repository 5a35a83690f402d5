using TaH.Training.Data;
using TaH.Training.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Training.Evaluation;

/// <summary>How well the decider, at one threshold, finds the oracle's hard positions.</summary>
public sealed record ThresholdPoint(double Threshold, double Precision, double Recall, double F1, double IterateShare);

/// <summary>
/// The decider's precision and recall against the oracle labels for thresholds 0.02 .. 0.98, over
/// every real position of held-out sequences (as stage 2 trains it), and the threshold with the best F1.
/// </summary>
public sealed record ThresholdSweep(int Positions, int HardPositions, ThresholdPoint[] Points)
{
    public ThresholdPoint Best => Points.MaxBy(p => p.F1)!;

    public static ThresholdSweep Measure(TrainableTaH model, IReadOnlyList<Example> heldOut, int padId, int batchSize)
    {
        var probabilities = new List<float>();
        var labels = new List<bool>();
        model.IsTraining = false;
        using (no_grad())
        {
            foreach (var chunk in heldOut.Chunk(batchSize))
            {
                using var scope = NewDisposeScope();
                using var batch = Batch.Make(chunk, padId);
                var p = model.ContinueLogit(model.Depth1(batch.Ids)).sigmoid().masked_select(batch.Valid);
                probabilities.AddRange(p.data<float>().ToArray());
                labels.AddRange(batch.Hard!.masked_select(batch.Valid).data<bool>().ToArray());
            }
        }

        int hard = labels.Count(l => l);
        var points = new List<ThresholdPoint>();
        for (int i = 1; i < 50; i++)
        {
            double threshold = i / 50.0;
            int truePositive = 0, predicted = 0;
            for (int k = 0; k < probabilities.Count; k++)
            {
                if (probabilities[k] > threshold)
                {
                    predicted++;
                    truePositive += labels[k] ? 1 : 0;
                }
            }

            double precision = predicted == 0 ? 1 : (double)truePositive / predicted;
            double recall = hard == 0 ? 1 : (double)truePositive / hard;
            double f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
            points.Add(new ThresholdPoint(threshold, precision, recall, f1, (double)predicted / Math.Max(1, probabilities.Count)));
        }

        return new ThresholdSweep(probabilities.Count, hard, [.. points]);
    }
}
