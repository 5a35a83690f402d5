namespace TaH.Kernels.Tests;

/// <summary>Entry point for the GPU machine's checks and benchmarks (xunit ignores it).</summary>
public static class Program
{
    public static int Main(string[] args) => GpuCheck.Run(args);
}
