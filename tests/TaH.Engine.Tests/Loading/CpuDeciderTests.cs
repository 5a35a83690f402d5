using TaH.Engine.Config;
using TaH.Engine.Model;
using TaH.Kernels.Cpu;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Engine.Tests.Loading;

/// <summary>
/// The decider's forward on the CPU kernel formats (raw buffers, plain loops) against torch's ops
/// on the same weights: bf16 matrices hold bf16-rounded values exactly, so only the order of fp32
/// sums and the erf approximation (1.2e-7) differ.
/// </summary>
public class CpuDeciderTests
{
    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 5)]
    [InlineData(true, 3)]
    public void KernelFormatForwardMatchesTorchsOps(bool normalizeInput, int rows)
    {
        using var scope = NewDisposeScope();
        var config = Config([32, 32, 24], normalizeInput);
        manual_seed(rows + (normalizeInput ? 10 : 0));
        var state = new Dictionary<string, Tensor>();
        foreach (var parameter in new DeciderLayout(config).Parameters)
        {
            var value = parameter.IsNorm && !parameter.IsBias ? ones(parameter.Shape).add_(randn(parameter.Shape).mul_(0.1))
                : randn(parameter.Shape).mul_(parameter.Shape.Length == 2 ? 1.0 / Math.Sqrt(parameter.Shape[1]) : 0.1);
            // Matrices rounded to bf16, so both paths multiply the same values.
            state[parameter.Name] = parameter.Shape.Length == 2 ? value.to(ScalarType.BFloat16).to(ScalarType.Float32) : value;
        }

        using var torchPath = IterationDecider.Create(config, state, "test", new ModelOptions());
        using var kernelPath = IterationDecider.Create(config, state, "test", new ModelOptions { Weights = WeightFormat.Bf16 });
        var hidden = randn(rows, 96).mul_(2);
        var top = randn(rows, 12).mul_(3).sort(1, descending: true).Values;
        var expected = torchPath.ContinueProbabilities([hidden], top);
        var actual = kernelPath.ContinueProbabilities([hidden], top);
        Assert.Equal(rows, actual.Length);
        // Measured differences are ~1e-7; 1e-5 is the relative fp32 error of these few short sums.
        for (int i = 0; i < rows; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5, $"row {i}: torch {expected[i]}, kernels {actual[i]}");
        }

        Assert.Contains(expected, p => p > 0.01 && p < 0.99);
    }

    /// <summary>
    /// With the matrices on a block format's grid (quantised once, dequantised), the weights are
    /// exact in that format, and only the activations' rounding moves the kernels' result: half a
    /// step of each 32-block, 2^-8 of its largest magnitude, entering each of the n linear layers.
    /// To first order the continue logit (unit-scale: layer-normed features times the last layer)
    /// moves by n 2^-8, the probability by a quarter of that.
    /// </summary>
    [Theory]
    [InlineData(WeightFormat.Q8_0)]
    [InlineData(WeightFormat.Q4_0)]
    public void BlockFormatForwardMovesOnlyByTheActivationRounding(WeightFormat format)
    {
        using var scope = NewDisposeScope();
        var config = Config([64, 64, 48], normalizeInput: false);
        manual_seed(7 + (int)format);
        var layout = new DeciderLayout(config);
        var state = new Dictionary<string, Tensor>();
        foreach (var parameter in layout.Parameters)
        {
            var value = parameter.IsNorm && !parameter.IsBias ? ones(parameter.Shape).add_(randn(parameter.Shape).mul_(0.1))
                : randn(parameter.Shape).mul_(parameter.Shape.Length == 2 ? 1.0 / Math.Sqrt(parameter.Shape[1]) : 0.1);
            state[parameter.Name] = parameter.Shape.Length == 2 ? OnGrid(value, format) : value;
        }

        using var torchPath = IterationDecider.Create(config, state, "test", new ModelOptions());
        using var kernelPath = IterationDecider.Create(config, state, "test", new ModelOptions { Weights = format });
        int rows = 64;
        var hidden = randn(rows, 96).mul_(2);
        var top = randn(rows, 12).mul_(3).sort(1, descending: true).Values;
        var expected = torchPath.ContinueProbabilities([hidden], top);
        var actual = kernelPath.ContinueProbabilities([hidden], top);
        int linears = layout.Parameters.Count(p => p.Shape.Length == 2);
        double eps = linears * Math.Pow(2, -8) / 4;
        for (int i = 0; i < rows; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= eps, $"row {i}: torch {expected[i]}, {format.Name()} kernels {actual[i]} (bound {eps:G3})");
        }

        Assert.Contains(expected, p => p > 0.1 && p < 0.9);
    }

    /// <summary>A small decider: two hidden entries of 48, a top-10, blocks of the given widths.</summary>
    private static DeciderConfig Config(int[] hiddenDims, bool normalizeInput) => new()
    {
        TopK = 10,
        HiddenStatesSize = 48,
        HiddenStatesLayerNums = [1, 3],
        HiddenDims = hiddenDims,
        ExpansionFactor = 4,
        NormalizeInput = normalizeInput,
        Threshold = 0.5,
        MaxIter = 2,
    };

    /// <summary>The nearest values <paramref name="format"/> holds exactly: quantised and dequantised once.</summary>
    private static Tensor OnGrid(Tensor matrix, WeightFormat format)
    {
        int rows = (int)matrix.shape[0], columns = (int)matrix.shape[1];
        using BlockMatrix grid = format == WeightFormat.Q8_0 ? new Q8_0Matrix(rows, columns) : new Q4_0Matrix(rows, columns);
        grid.Quantize(0, matrix.contiguous().data<float>().ToArray());
        var values = new float[rows * columns];
        for (int r = 0; r < rows; r++)
        {
            grid.DequantizeRow(r, values.AsSpan(r * columns, columns));
        }

        return tensor(values, [rows, columns]);
    }
}

/// <summary>The decider's GELU (vector lanes and the scalar tail) against erf from its Taylor series in fp64.</summary>
public class CpuDeciderGeluTests
{
    [Fact]
    public void GeluMatchesTheSeriesErfWithinTheApproximationsBound()
    {
        // 1001 values: not a multiple of any vector width, so the tail runs too.
        var x = Enumerable.Range(0, 1001).Select(i => (float)(-4.5 + (9.0 * i / 1000))).ToArray();
        var y = (float[])x.Clone();
        CpuDeciderMlp.Gelu(y);

        for (int i = 0; i < x.Length; i++)
        {
            double exact = 0.5 * x[i] * (1 + SeriesErf(x[i] / Math.Sqrt(2)));
            // erf to 1.2e-7 (Numerical Recipes' bound), then one fp32 rounding.
            double bound = (0.5 * Math.Abs(x[i]) * 1.3e-7) + (Math.Abs(exact) * Math.Pow(2, -24)) + 1e-30;
            Assert.True(Math.Abs(y[i] - exact) <= bound, $"gelu({x[i]}) = {y[i]}, series {exact}, bound {bound:G3}");
        }
    }

    /// <summary>2/sqrt(pi) sum (-1)^n z^(2n+1) / (n! (2n+1)); for |z| &lt;= 3.2 the largest term is ~1e4, so fp64 keeps 1e-12.</summary>
    private static double SeriesErf(double z)
    {
        double term = z, sum = z;
        for (int n = 1; n < 200 && Math.Abs(term) > 1e-300; n++)
        {
            term *= -z * z / n;
            sum += term / ((2 * n) + 1);
        }

        return 2 / Math.Sqrt(Math.PI) * sum;
    }
}
