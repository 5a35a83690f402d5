using TaH.Engine.TaH;

namespace TaH.Engine.Generation;

/// <summary>
/// A model against a reference copy of itself (the same checkpoint in fp32), teacher-forced over
/// one prompt: how often the top-1 token agrees, how far the logits move, and whether the decider
/// takes the same depth decisions. Depth-1 hidden states never read depth-2 entries, so each
/// position's first-pass continue probability is the same whatever the threshold: a threshold
/// can be chosen from the reference's probabilities (<see cref="ThresholdForShare"/>) before the
/// compared runs.
/// </summary>
public sealed record WeightAccuracy(
    int Positions,
    int Top1Agreements,
    double MaxLogitDifference,
    double MeanLogitDifference,
    double MaxReferenceLogit,
    double? Threshold,
    int DepthAgreements,
    int ReferenceIterated,
    int ComparedIterated,
    double? MaxProbabilityDifference,
    double? MaxLogitDifferenceSameDepth)
{
    public double Top1Agreement => (double)Top1Agreements / Positions;

    public double DepthAgreement => (double)DepthAgreements / Positions;

    public static WeightAccuracy Compare(TaHModel reference, TaHModel compared, IReadOnlyList<int> prompt, IterationPolicy policy)
    {
        var a = Inspection.Run(reference, prompt, policy, 0).Prefill;
        var b = Inspection.Run(compared, prompt, policy, 0).Prefill;
        int top1 = 0, depths = 0;
        double maxDiff = 0, sumDiff = 0, maxLogit = 0, maxProb = 0, maxSameDepth = 0;
        long count = 0;
        bool judged = false;
        for (int p = 0; p < a.Length; p++)
        {
            var x = a[p].FinalLogits;
            var y = b[p].FinalLogits;
            int ax = 0, by = 0;
            double diff = 0;
            for (int i = 0; i < x.Length; i++)
            {
                double d = Math.Abs(x[i] - y[i]);
                diff = Math.Max(diff, d);
                sumDiff += d;
                maxLogit = Math.Max(maxLogit, Math.Abs(x[i]));
                ax = x[i] > x[ax] ? i : ax;
                by = y[i] > y[by] ? i : by;
            }

            count += x.Length;
            maxDiff = Math.Max(maxDiff, diff);
            top1 += ax == by ? 1 : 0;
            depths += a[p].Depth == b[p].Depth ? 1 : 0;
            if (a[p].Depth == b[p].Depth)
            {
                maxSameDepth = Math.Max(maxSameDepth, diff);
            }

            if (a[p].ContinueProbability is { } pa && b[p].ContinueProbability is { } pb)
            {
                judged = true;
                maxProb = Math.Max(maxProb, Math.Abs(pa - pb));
            }
        }

        double? threshold = policy.Kind == PolicyKind.Decider ? policy.Threshold ?? reference.Decider?.Threshold : null;
        return new WeightAccuracy(
            a.Length, top1, maxDiff, sumDiff / count, maxLogit, threshold, depths,
            a.Count(r => r.Depth > 1), b.Count(r => r.Depth > 1),
            judged ? maxProb : null, maxSameDepth);
    }

    /// <summary>The threshold above which <paramref name="share"/> of the prompt's positions' first-pass probabilities lie, in <paramref name="model"/>.</summary>
    public static double ThresholdForShare(TaHModel model, IReadOnlyList<int> prompt, double share)
    {
        var nobody = IterationPolicy.Parse("decider", 1.0);
        var probabilities = Inspection.Run(model, prompt, nobody, 0).Prefill
            .Select(r => r.ContinueProbability ?? throw new InvalidOperationException("the decider judged no position"))
            .Order().ToArray();
        int above = (int)Math.Round(share * probabilities.Length);
        int at = Math.Clamp(probabilities.Length - above - 1, 0, probabilities.Length - 1);
        return above == 0 ? probabilities[^1] : (probabilities[at] + probabilities[at + 1]) / 2;
    }
}
