using TaH.Kernels.Cuda;

namespace TaH.Kernels.Tests;

/// <summary>
/// Every kernel module compiles to PTX for sm_90 in every configuration the engine launches, on a
/// machine with no GPU (NVRTC alone). This is what CI checks of the CUDA code.
/// </summary>
public class KernelCompileTests
{
    public static TheoryData<string, string> Configurations()
    {
        var data = new TheoryData<string, string>();
        foreach (var (file, defines) in KernelConfigurations.All())
        {
            data.Add(file, string.Join(' ', defines));
        }

        return data;
    }

    [NvrtcTheory]
    [MemberData(nameof(Configurations))]
    public void CompilesToPtxForSm90(string file, string defines)
    {
        var module = KernelCompiler.Compile(file, "compute_90", defines.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        string ptx = System.Text.Encoding.UTF8.GetString(module.Image);
        Assert.Contains(".target sm_90", ptx, StringComparison.Ordinal);
        foreach (string kernel in KernelConfigurations.KernelsOf(file))
        {
            Assert.Contains($".entry {kernel}(", ptx, StringComparison.Ordinal);
        }
    }

    [NvrtcFact]
    public void PrefillUsesTensorCoreInstructions()
    {
        var module = KernelCompiler.Compile("paged_attention.cu", "compute_90", KernelConfigurations.Attention("bf16", 128, 2));
        string ptx = System.Text.Encoding.UTF8.GetString(module.Image);
        Assert.Contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", ptx, StringComparison.Ordinal);
        Assert.Contains("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16", ptx, StringComparison.Ordinal);
        Assert.Contains("cp.async.cg.shared.global", ptx, StringComparison.Ordinal);
    }

    [NvrtcFact]
    public void ABrokenKernelFailsWithTheCompilerLog()
    {
        var e = Assert.Throws<CudaException>(() => KernelCompiler.Compile("paged_attention.cu", "compute_90", ["HEAD_DIM=128"]));
        Assert.Contains("GROUPS", e.Message, StringComparison.Ordinal);
    }
}
