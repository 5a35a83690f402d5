using TaH.Checkpoints.Writing;
using TaH.Engine.Checkpoints;
using TaH.Engine.Config;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.TaH;
using TaH.Kernels.Cpu;
using TorchSharp;

namespace TaH.Engine.Tests.Loading;

/// <summary>
/// The engine with bf16, q8_0 and q4_0 weights against the fp32 engine.
/// <para>
/// bf16 widens exactly, so a bf16 model must equal the fp32 engine on a copy of the checkpoint
/// whose matrices were rounded to bf16, up to fp32 summation order.
/// </para>
/// <para>
/// q8_0 rounds each weight and each activation entering a product to half a step of its
/// 32-block, at most 2^-8 of the block's largest magnitude. To first order these relative errors
/// add along a row's path: with n quantised products (4 per layer and the head, per pass) the
/// logits move by at most eps = 2 n 2^-8 times their largest magnitude, so the top-1 token cannot
/// change where the fp32 top-1 leads the runner-up by more than twice that. The decider's output
/// is a unit-scale (layer-normed) feature times its last layer, so its probability moves by at
/// most a quarter (the sigmoid's slope) of the eps of its own path, and a decision cannot flip
/// where the probability is farther than that from the threshold.
/// </para>
/// <para>
/// q4_0's steps are 16 times coarser, which leaves the same first-order bound without content on
/// two layers; on a checkpoint whose matrices sit on its grid, though, only the activations round,
/// so the bound is half of q8_0's.
/// </para>
/// </summary>
public class WeightFormatTests
{
    private const double Step = 1.0 / 256;

    private static readonly int[] Prompt = [.. Enumerable.Range(0, 64).Select(i => ((i * 7919) + 13) % 512)];

    private static string RandomTiny(TempDirectory dir)
    {
        RandomCheckpoint.Write(dir.Path, ModelShape.Tiny, seed: 3, dtype: torch.ScalarType.Float32);
        return dir.Path;
    }

    [Theory]
    [InlineData("never")]
    [InlineData("always")]
    public void Q8_0LogitsStayWithinTheFormatsRoundingOfFp32(string policy)
    {
        using var dir = new TempDirectory();
        string path = RandomTiny(dir);
        using var fp32 = ModelLoader.Load(path);
        using var q8 = ModelLoader.Load(path, new ModelOptions { Weights = WeightFormat.Q8_0 });
        Assert.Equal(WeightFormat.Q8_0, q8.Base.Weights);
        int passes = policy == "always" ? 2 : 1;
        int checkedTop1 = AssertLogitsWithin(fp32, q8, policy, 2 * passes * ((4 * fp32.Config.NumHiddenLayers) + 1) * Step);

        // Two passes double the bound, past every lead this random model has; one pass leaves some.
        Assert.True(passes == 2 || checkedTop1 > 0, "no position had a top-1 lead large enough to check");
    }

    /// <summary>
    /// The prompt's logits of <paramref name="compared"/> within <paramref name="eps"/> of the largest
    /// fp32 logit at every position, at the same depths, and the same top-1 wherever fp32's leads by
    /// more than twice that; returns how many positions had such a lead.
    /// </summary>
    private static int AssertLogitsWithin(TaHModel fp32, TaHModel compared, string policy, double eps)
    {
        var a = Inspection.Run(fp32, Prompt, IterationPolicy.Parse(policy), 0);
        var b = Inspection.Run(compared, Prompt, IterationPolicy.Parse(policy), 0);
        int checkedTop1 = 0;
        for (int p = 0; p < Prompt.Length; p++)
        {
            var x = a.Prefill[p].FinalLogits;
            var y = b.Prefill[p].FinalLogits;
            Assert.Equal(a.Prefill[p].Depth, b.Prefill[p].Depth);
            double bound = eps * x.Max(Math.Abs);
            double diff = x.Zip(y, (u, v) => Math.Abs(u - v)).Max();
            Assert.True(diff <= bound, $"position {p}: logits differ by {diff:G3}, more than {bound:G3}");
            var sorted = x.OrderDescending().ToArray();
            if (sorted[0] - sorted[1] > 2 * bound)
            {
                Assert.Equal(Array.IndexOf(x, sorted[0]), Array.IndexOf(y, y.Max()));
                checkedTop1++;
            }
        }

        return checkedTop1;
    }

    [Theory]
    [InlineData("never")]
    [InlineData("always")]
    public void Q4_0LogitsOnItsGridStayWithinTheActivationRoundingOfFp32(string policy)
    {
        using var dir = new TempDirectory();
        string path = RandomTiny(dir);
        RoundMatrices(Path.Combine(path, "model.safetensors"), t => t.dim() == 2, OnQ4_0Grid);
        using var fp32 = ModelLoader.Load(path);
        using var q4 = ModelLoader.Load(path, ModelOptions.Parse("cpu", "q4_0"));
        Assert.Equal(WeightFormat.Q4_0, q4.Base.Weights);
        int passes = policy == "always" ? 2 : 1;
        int checkedTop1 = AssertLogitsWithin(fp32, q4, policy, passes * ((4 * fp32.Config.NumHiddenLayers) + 1) * Step);
        Assert.True(checkedTop1 > 0, "no position had a top-1 lead large enough to check");
    }

    [Fact]
    public void Q8_0DeciderKeepsItsDecisionsWhereTheMarginIsLarge()
    {
        using var dir = new TempDirectory();
        string path = RandomTiny(dir);
        using var fp32 = ModelLoader.Load(path);
        using var q8 = ModelLoader.Load(path, new ModelOptions { Weights = WeightFormat.Q8_0 });
        // A threshold inside this random decider's range, so that both decisions occur.
        var policy = IterationPolicy.Parse("decider", 0.41);
        var a = Inspection.Run(fp32, Prompt, policy, 0);
        var b = Inspection.Run(q8, Prompt, policy, 0);
        var decider = fp32.Decider!.Config;
        int deciderLinears = 4 + (2 * decider.HiddenDims.Length); // projections, the blocks' MLPs, the output layer
        double eps = 2 * ((4 * fp32.Config.NumHiddenLayers) + 1 + deciderLinears) * Step / 4;
        int large = 0;
        for (int p = 0; p < Prompt.Length; p++)
        {
            double pa = a.Prefill[p].ContinueProbability!.Value, pb = b.Prefill[p].ContinueProbability!.Value;
            Assert.True(Math.Abs(pa - pb) <= eps, $"position {p}: continue probability {pa:F4} in fp32, {pb:F4} in q8_0 (bound {eps:F4})");
            if (Math.Abs(pa - 0.41) > eps)
            {
                Assert.Equal(a.Prefill[p].Depth, b.Prefill[p].Depth);
                large++;
            }
        }

        Assert.Contains(a.Prefill, r => r.Depth == 2);
        Assert.Contains(a.Prefill, r => r.Depth == 1);
        Assert.True(large > 0, "no position had a decider margin large enough to check");
    }

    [Theory]
    [InlineData("never")]
    [InlineData("always")]
    public void Bf16EqualsFp32OnBf16RoundedMatrices(string policy)
    {
        using var dir = new TempDirectory();
        using var rounded = new TempDirectory();
        string path = RandomTiny(dir);
        // The adapter too, in both copies: exact in bf16, the kernel formats then hold it in bf16.
        RoundToBf16(Path.Combine(path, "lora", "adapter_model.safetensors"), _ => true);
        foreach (string file in Directory.GetFiles(path, "*", SearchOption.AllDirectories).Where(f => f != Path.Combine(path, "model.safetensors")))
        {
            string target = Path.Combine(rounded.Path, Path.GetRelativePath(path, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }

        File.Copy(Path.Combine(path, "model.safetensors"), Path.Combine(rounded.Path, "model.safetensors"));
        RoundToBf16(Path.Combine(rounded.Path, "model.safetensors"), t => t.dim() == 2);

        using var reference = ModelLoader.Load(rounded.Path);
        using var bf16Model = ModelLoader.Load(path, ModelOptions.Parse("cpu", "bf16"));
        Assert.Equal(2 * AdapterParameters(path), bf16Model.Base.Layers.Sum(l => new[] { l.QkvProj, l.OProj, l.GateUpProj, l.DownProj }.Sum(p => p.Lora!.Bytes)));
        var a = Inspection.Run(reference, Prompt, IterationPolicy.Parse(policy), 8);
        var b = Inspection.Run(bf16Model, Prompt, IterationPolicy.Parse(policy), 8);
        Assert.Equal(a.GreedyTokens, b.GreedyTokens);
        for (int p = 0; p < Prompt.Length; p++)
        {
            // Only the order of fp32 additions differs: relative 1e-5 of the largest logit covers
            // gamma(n) for dot products of a few hundred terms through every layer.
            var x = a.Prefill[p].FinalLogits;
            double bound = 1e-5 * x.Max(Math.Abs);
            double diff = x.Zip(b.Prefill[p].FinalLogits, (u, v) => Math.Abs(u - v)).Max();
            Assert.True(diff <= bound, $"position {p}: {diff:G3} > {bound:G3}");
        }
    }

    [Fact]
    public void KernelFormatsHoldFewerBytesThanFp32()
    {
        using var dir = new TempDirectory();
        RandomCheckpoint.Write(dir.Path, ModelShape.Tiny with { HiddenSize = 128, IntermediateSize = 256, HeadDim = 32 }, seed: 1, dtype: torch.ScalarType.Float32);
        using var fp32 = ModelLoader.Load(dir.Path);
        using var bf16 = ModelLoader.Load(dir.Path, ModelOptions.Parse("cpu", "bf16"));
        using var q8 = ModelLoader.Load(dir.Path, ModelOptions.Parse("cpu", "q8_0"));
        using var q4 = ModelLoader.Load(dir.Path, ModelOptions.Parse("cpu", "q4_0", "q8_0"));
        // Matrices: 4, 2, 34/32 and 18/32 bytes a weight; the fp32 norms are the same in all three. LoRA
        // is fp32 in all three (its values are not exact in bf16): the kernel formats hold exactly
        // the adapter file's parameters, the fp32 path each fused B block-diagonally (its zeros included).
        long adapter = 4 * AdapterParameters(dir.Path);
        long fusedAdapter = fp32.Base.Layers.Sum(l => new[] { l.QkvProj, l.OProj, l.GateUpProj, l.DownProj }.Sum(p => p.Lora!.Bytes));
        Assert.True(fusedAdapter > adapter, "the fused qkv and gate|up B matrices hold zeros off their blocks");
        long norms = fp32.Base.WeightBytes - Matrices(fp32, 4) - fusedAdapter;
        Assert.Equal(Matrices(fp32, 2) + norms + adapter, bf16.Base.WeightBytes);
        Assert.Equal(Matrices(fp32, 34.0 / 32) + norms + adapter, q8.Base.WeightBytes);
        Assert.Equal(Matrices(fp32, 18.0 / 32) + norms + adapter, q4.Base.WeightBytes);
        Assert.Equal(WeightFormat.Bf16, bf16.Base.Weights);

        // The decider's matrices follow --weights unless --decider-weights names another format.
        Assert.Equal(q8.Decider!.Bytes, q4.Decider!.Bytes);
        long deciderNorms = fp32.Decider!.Bytes - DeciderMatrices(fp32, 4);
        Assert.Equal(DeciderMatrices(fp32, 34.0 / 32) + deciderNorms, q8.Decider.Bytes);

        // The block formats pad rows to tiles of 4 and columns to groups of 4 blocks of 32, which
        // the decider's small layers (a top-k of 100 columns) do not fill; fp32 pads nothing.
        static long DeciderMatrices(TaHModel m, double bytesPerWeight) =>
            (long)Math.Round(bytesPerWeight * new DeciderLayout(m.Decider!.Config).Parameters.Where(p => p.Shape.Length == 2)
                .Sum(p => bytesPerWeight == 4 ? p.Shape[0] * p.Shape[1] : Padded(p.Shape[0], 4) * Padded(p.Shape[1], 128)));

        static long Padded(long n, long multiple) => (n + multiple - 1) / multiple * multiple;

        static long Matrices(TaHModel m, double bytesPerWeight) =>
            (long)Math.Round(bytesPerWeight * m.Base.Layers.Sum(l => new[] { l.QkvProj, l.OProj, l.GateUpProj, l.DownProj }.Sum(p => p.Weight.OutFeatures * p.Weight.InFeatures))
                + (bytesPerWeight * m.Base.EmbedTokens.OutFeatures * m.Base.EmbedTokens.InFeatures));
    }

    private static long AdapterParameters(string model)
    {
        using var file = SafeTensorsCheckpoint.OpenFile(Path.Combine(model, "lora", "adapter_model.safetensors"));
        return file.Names.Sum(n => file.Info(n).Shape.Aggregate(1L, (a, b) => a * b));
    }

    /// <summary>Rewrites a safetensors file with the chosen tensors rounded to bf16 (stored as fp32).</summary>
    private static void RoundToBf16(string file, Func<torch.Tensor, bool> which) =>
        RoundMatrices(file, which, t => t.to(torch.ScalarType.BFloat16).to(torch.ScalarType.Float32));

    /// <summary>The nearest values q4_0 holds exactly: each row quantised and dequantised once.</summary>
    private static torch.Tensor OnQ4_0Grid(torch.Tensor matrix)
    {
        int rows = (int)matrix.shape[0], columns = (int)matrix.shape[1];
        using var grid = new Q4_0Matrix(rows, columns);
        grid.Quantize(0, matrix.contiguous().data<float>().ToArray());
        var values = new float[rows * columns];
        for (int r = 0; r < rows; r++)
        {
            grid.DequantizeRow(r, values.AsSpan(r * columns, columns));
        }

        return torch.tensor(values, [rows, columns]);
    }

    /// <summary>Rewrites a safetensors file with the chosen tensors replaced by <paramref name="round"/> of them.</summary>
    private static void RoundMatrices(string file, Func<torch.Tensor, bool> which, Func<torch.Tensor, torch.Tensor> round)
    {
        List<KeyValuePair<string, torch.Tensor>> tensors;
        using (var weights = SafeTensorsCheckpoint.OpenFile(file))
        {
            tensors = [.. weights.Names.Select(name =>
            {
                using var original = weights.Load(name);
                return new KeyValuePair<string, torch.Tensor>(name, which(original) ? round(original) : original.clone());
            })];
        }

        SafeTensorsWriter.Write(file, tensors);
        tensors.ForEach(t => t.Value.Dispose());
    }

    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void AWeightABlockFormatCannotHoldIsRefusedNamingIt(string format)
    {
        using var dir = new TempDirectory();
        string path = RandomTiny(dir);
        string file = Path.Combine(path, "model.safetensors");
        List<KeyValuePair<string, torch.Tensor>> tensors;
        using (var weights = SafeTensorsCheckpoint.OpenFile(file))
        {
            tensors = [.. weights.Names.Select(n => new KeyValuePair<string, torch.Tensor>(n, weights.Load(n)))];
        }

        var down = tensors.Single(t => t.Key == "model.layers.1.mlp.down_proj.weight").Value;
        down[3, 7] = torch.tensor(float.PositiveInfinity);
        SafeTensorsWriter.Write(file, tensors);
        tensors.ForEach(t => t.Value.Dispose());

        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(path, ModelOptions.Parse("cpu", format)));
        Assert.Contains($"model.layers.1.down_proj: cannot convert to {format}: row 3 holds a value that is not finite", e.Message);
    }

    [Theory]
    [InlineData("int4", "--weights must be fp32, bf16, q8_0 or q4_0 (got 'int4')")]
    [InlineData("Q8_0", null)]
    [InlineData("q4_0", null)]
    public void WeightsAreParsedByName(string text, string? error)
    {
        if (error is null)
        {
            Assert.Equal(text.ToLowerInvariant(), ModelOptions.Parse("cpu", text).Weights.Name());
        }
        else
        {
            Assert.Equal(error, Assert.Throws<ArgumentException>(() => ModelOptions.Parse("cpu", text)).Message);
        }
    }

    [Fact]
    public void TheDeciderTakesTheModelsFormatUnlessTold()
    {
        Assert.Equal(WeightFormat.Q4_0, ModelOptions.Parse("cpu", "q4_0").Decider);
        Assert.Equal(WeightFormat.Q8_0, ModelOptions.Parse("cpu", "q4_0", "q8_0").Decider);
        var fp32Model = ModelOptions.Parse("cpu", null, "q8_0");
        Assert.Equal((WeightFormat.Fp32, WeightFormat.Q8_0), (fp32Model.Weights, fp32Model.Decider));
        var e = Assert.Throws<ArgumentException>(() => ModelOptions.Parse("cpu", "q4_0", "q5_1"));
        Assert.Equal("--decider-weights must be fp32, bf16, q8_0 or q4_0 (got 'q5_1')", e.Message);
    }

    [Theory]
    [InlineData("q8_0", null, "--weights q8_0 runs on the CPU; on a GPU the weights are bf16")]
    [InlineData(null, "q4_0", "--decider-weights q4_0 runs on the CPU; on a GPU the decider is bf16")]
    public void AGpuTakesBf16Only(string? weights, string? decider, string error)
    {
        var e = Assert.Throws<ArgumentException>(() => ModelOptions.Parse("cuda", weights, decider));
        Assert.Equal(error, e.Message);
    }
}
