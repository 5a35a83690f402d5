using System.Runtime.Intrinsics.X86;

namespace TaH.Kernels.Cpu;

/// <summary>The SIMD paths of the CPU weight kernels, chosen at run time.</summary>
public enum CpuIsa
{
    /// <summary>Plain loops: any CPU, and the tests' second opinion.</summary>
    Scalar,

    /// <summary>256-bit: AVX2 and FMA.</summary>
    Avx2,

    /// <summary>512-bit: AVX-512 F and BW.</summary>
    Avx512,
}

/// <summary>
/// Which paths this CPU runs. .NET 10 exposes VPDPBUSD/VPDPWSSD only as the VEX <c>AvxVnni</c>
/// and <c>Avx10v1</c>, which AVX-512-VNNI CPUs without AVX-VNNI or AVX10 (AMD Zen 4) report as
/// unsupported, so the int8 dot products use VPMADDWD on sign-extended int16 everywhere.
/// <c>TAH_CPU_ISA=scalar|avx2|avx512</c> picks a narrower path (for A/B measurements).
/// </summary>
public static class CpuIsas
{
    /// <summary>Every path this CPU can run, scalar first.</summary>
    public static IReadOnlyList<CpuIsa> Supported { get; } = [.. Enum.GetValues<CpuIsa>().Where(IsSupported)];

    /// <summary>The widest path, or the one <c>TAH_CPU_ISA</c> names (declared after <see cref="Supported"/>, which it reads).</summary>
    public static CpuIsa Best { get; } = Choose();

    public static bool IsSupported(CpuIsa isa) =>
        isa switch
        {
            CpuIsa.Scalar => true,
            CpuIsa.Avx2 => Avx2.IsSupported && Fma.IsSupported,
            CpuIsa.Avx512 => Avx512F.IsSupported && Avx512BW.IsSupported,
            _ => false,
        };

    private static CpuIsa Choose()
    {
        var widest = Supported[^1];
        string? forced = Environment.GetEnvironmentVariable("TAH_CPU_ISA");
        if (forced is null)
        {
            return widest;
        }

        return Enum.TryParse<CpuIsa>(forced, ignoreCase: true, out var isa) && IsSupported(isa) && isa <= widest
            ? isa
            : throw new InvalidOperationException($"TAH_CPU_ISA={forced}: this CPU runs {string.Join(", ", Supported).ToLowerInvariant()}");
    }
}
