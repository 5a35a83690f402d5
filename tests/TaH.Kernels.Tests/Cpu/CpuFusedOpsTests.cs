using TaH.Kernels.Cpu;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels.Tests.Cpu;

/// <summary>
/// The in-place ops against torch's composition of the same formulas. Only summation order
/// differs: the mean of n squares carries at most (n + 1) u relative error either way, its
/// inverse square root half that plus 2u, and each later product or sum one u more, so two
/// implementations agree to 2 ((n + 1) / 2 + 6) u of the magnitudes involved.
/// </summary>
public class CpuFusedOpsTests
{
    private const double Unit = 1.0 / (1 << 24);

    private static double Tolerance(int n) => 2 * (((n + 1) / 2.0) + 6) * Unit;

    [Theory]
    [InlineData(1, 1024)]
    [InlineData(5, 64)]
    public void RmsNormMatchesTorch(int rows, int n)
    {
        using var scope = NewDisposeScope();
        manual_seed(rows + n);
        var x = randn(rows, n) * 3;
        var w = rand(n) + 0.5;
        var expected = TorchFusedOps.Instance.RmsNorm(x, w, 1e-6).data<float>().ToArray();
        var actual = CpuFusedOps.Instance.RmsNorm(x, w, 1e-6).data<float>().ToArray();
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= Tolerance(n) * Math.Abs(expected[i]) + 1e-30, $"{i}: {actual[i]} vs {expected[i]}");
        }
    }

    [Theory]
    [InlineData(1, 16, 8, 128)]
    [InlineData(3, 4, 2, 16)]
    public void QkvNormRopeMatchesTorch(int rows, int heads, int kvHeads, int headDim)
    {
        using var scope = NewDisposeScope();
        manual_seed(rows * heads);
        var qkv = randn(rows, (heads + (2 * kvHeads)) * headDim);
        var qNorm = rand(headDim) + 0.5;
        var kNorm = rand(headDim) + 0.5;
        var angles = rand(rows, 1, headDim) * 6;
        var cos = angles.cos();
        var sin = angles.sin();
        var expected = TorchFusedOps.Instance.QkvNormRope(qkv, heads, kvHeads, headDim, qNorm, kNorm, cos, sin, 1e-6);
        var actual = CpuFusedOps.Instance.QkvNormRope(qkv, heads, kvHeads, headDim, qNorm, kNorm, cos, sin, 1e-6);
        foreach (var (e, a) in new[] { (expected.Q, actual.Q), (expected.K, actual.K), (expected.V, actual.V) })
        {
            Assert.Equal(e.shape, a.shape);
            // Each output adds two products of normed values, each bounded by the head's largest.
            var bound = (e.abs().amax([-1], keepdim: true) * 2 * Tolerance(headDim)).expand_as(e);
            Assert.True((e - a).abs().le(bound).all().item<bool>(), $"max difference {(e - a).abs().max().item<float>()}");
        }
    }
}
