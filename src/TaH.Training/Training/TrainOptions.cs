namespace TaH.Training.Training;

/// <summary>Optimisation settings shared by every stage (the reference recipes' names in brackets).</summary>
public sealed record TrainOptions
{
    public int Steps { get; init; } = 1000;

    public int BatchSize { get; init; } = 32;

    /// <summary>Peak learning rate [learning_rate].</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>AdamW decoupled weight decay [weight_decay].</summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>Share of the steps spent warming up linearly [warmup_ratio].</summary>
    public double WarmupRatio { get; init; } = 0.03;

    /// <summary>The cosine decays to this share of the peak [min_lr_rate].</summary>
    public double MinLrRatio { get; init; } = 0.1;

    /// <summary>Global gradient-norm clip [max_grad_norm].</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    public int Seed { get; init; } = 1;

    /// <summary>Write a resumable checkpoint every this many steps (0: only at the end).</summary>
    public int SaveEvery { get; init; } = 200;

    /// <summary>Measure the held-out loss every this many steps.</summary>
    public int EvalEvery { get; init; } = 100;

    /// <summary>Learning rate at <paramref name="step"/> (0-based): linear warmup, then cosine down to the floor.</summary>
    public double LearningRateAt(int step)
    {
        int warmup = Math.Max(1, (int)Math.Ceiling(WarmupRatio * Steps));
        if (step < warmup)
        {
            return LearningRate * (step + 1) / warmup;
        }

        double progress = (double)(step - warmup) / Math.Max(1, Steps - warmup);
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * progress));
        return LearningRate * (MinLrRatio + ((1 - MinLrRatio) * cosine));
    }
}
