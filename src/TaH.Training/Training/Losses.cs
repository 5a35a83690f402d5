using TaH.Training.Data;
using TaH.Training.Model;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TaH.Training.Training;

/// <summary>The loss of each stage, as in the reference's NextTokenPredLoss and IterDeciderLoss.</summary>
public static class Losses
{
    /// <summary>Cross-entropy of the supervised next tokens (targets -100 elsewhere).</summary>
    public static Tensor NextToken(Tensor logits, Tensor targets) =>
        F.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: Batch.IgnoreIndex);

    /// <summary>Pretraining the reference model: one pass, plain next-token loss.</summary>
    public static Tensor Base(TrainableTaH model, Batch batch) =>
        NextToken(model.Depth1(batch.Ids, keepForDeeper: false).Logits, batch.Targets);

    /// <summary>Stage 1: the hard positions take depth 2; next-token loss on the final (summed) logits.</summary>
    public static Tensor Stage1(TrainableTaH model, Batch batch)
    {
        var hard = batch.Hard ?? throw new InvalidOperationException("stage 1 needs oracle labels");
        return NextToken(model.Depth2(model.Depth1(batch.Ids), hard), batch.Targets);
    }

    /// <summary>
    /// Stage 2: binary cross-entropy of the decider's continue logit after depth 1 against the oracle
    /// label, over every real position (prompt positions are easy, as the reference labels them), with
    /// the positive class weighted. Depth 2, the last depth, always stops and is not supervised, so
    /// it is not run; the frozen backbone runs without gradients.
    /// </summary>
    public static Trainer.LossFunction Stage2(double positiveWeight) => (model, batch) =>
    {
        var hard = batch.Hard ?? throw new InvalidOperationException("stage 2 needs oracle labels");
        Depth1Pass first;
        using (no_grad())
        {
            first = model.Depth1(batch.Ids);
        }

        var logit = model.ContinueLogit(first).masked_select(batch.Valid);
        var target = hard.masked_select(batch.Valid).to(ScalarType.Float32);
        using var weight = tensor(new[] { (float)positiveWeight });
        return F.binary_cross_entropy_with_logits(logit, target, pos_weights: weight);
    };
}
