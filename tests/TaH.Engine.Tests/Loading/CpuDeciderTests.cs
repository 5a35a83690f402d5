using TaH.Engine.Config;
using TaH.Engine.Model;
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
        var config = new DeciderConfig
        {
            TopK = 10,
            HiddenStatesSize = 48,
            HiddenStatesLayerNums = [1, 3],
            HiddenDims = [32, 32, 24],
            ExpansionFactor = 4,
            NormalizeInput = normalizeInput,
            Threshold = 0.5,
            MaxIter = 2,
        };
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
        var expected = torchPath.ContinueProbability(hidden, top).data<float>().ToArray();
        var actual = kernelPath.ContinueProbability(hidden, top).data<float>().ToArray();
        Assert.Equal(rows, actual.Length);
        // Measured differences are ~1e-7; 1e-5 is the relative fp32 error of these few short sums.
        for (int i = 0; i < rows; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5, $"row {i}: torch {expected[i]}, kernels {actual[i]}");
        }

        Assert.Contains(expected, p => p > 0.01 && p < 0.99);
    }
}
