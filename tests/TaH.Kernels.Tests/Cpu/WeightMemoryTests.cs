using System.Runtime.InteropServices;
using TaH.Kernels.Cpu;

namespace TaH.Kernels.Tests.Cpu;

public unsafe class WeightMemoryTests
{
    [Fact]
    public void ZeroOnDemandZeroesExactlyTheRangeAndGivesItsPagesBack()
    {
        const long size = 64L << 20;
        byte* p = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
        try
        {
            new Span<byte>(p, (int)size).Fill(0xAB);
            // An unaligned range: its partial first and last pages are cleared in place.
            long from = 100, to = size - 100;
            int before = ResidentPages(p, size);
            WeightMemory.ZeroOnDemand(p + from, to - from);
            int after = ResidentPages(p, size);

            if (OperatingSystem.IsLinux())
            {
                // The whole pages inside (all but two of 16,384) are no longer resident. Counted
                // for this range only (mincore): the process's RSS moves with tests running beside it.
                int pages = (int)(size / Environment.SystemPageSize);
                Assert.True(before >= pages * 9 / 10 && after <= pages / 10, $"resident pages went from {before} to {after} of {pages}");
            }

            Assert.Equal(0xAB, p[from - 1]);
            Assert.Equal(0xAB, p[to]);
            Assert.True(new ReadOnlySpan<byte>(p + from, (int)(to - from)).IndexOfAnyExcept((byte)0) < 0, "a byte of the range is not zero");
        }
        finally
        {
            NativeMemory.AlignedFree(p);
        }
    }

    /// <summary>Pages of [p, p + bytes) in memory (p page-aligned); 0 off Linux.</summary>
    private static int ResidentPages(byte* p, long bytes)
    {
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }

        var vector = new byte[(bytes + Environment.SystemPageSize - 1) / Environment.SystemPageSize];
        fixed (byte* v = vector)
        {
            Assert.Equal(0, Mincore(p, (nuint)bytes, v));
        }

        return vector.Count(b => (b & 1) != 0);
    }

    [DllImport("libc", EntryPoint = "mincore")]
    private static extern int Mincore(void* address, nuint length, byte* vector);
}
