using TaH.Kernels.Cuda;

namespace TaH.Kernels.Tests;

/// <summary>The kernels on a real GPU; skipped with the reason on machines without one (CI).</summary>
public class GpuKernelTests
{
    [GpuFact]
    public void PagedAttentionMatchesTheReferenceOnRandomProblems()
    {
        var device = CudaDevice.Get();
        foreach (var c in AttentionCase.RandomSuite(77, 30))
        {
            using var raw = new RawAttention(device, c);
            var (rel, max) = AttentionCase.Compare(c.Reference(), raw.Run());
            Assert.True(rel < 1.5e-2 && max < 5e-2, $"{c.Describe()}: rel L2 {rel}, max abs {max}");
        }
    }

    [GpuFact]
    public void FusedKernelsMatchTheirHostFormulas()
    {
        foreach (var r in FusedChecks.All(CudaDevice.Get(), 3))
        {
            Assert.True(r.Passed, $"{r.Name}: {r.Detail} {r.Error} > {r.Limit}");
        }
    }
}
