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
            long before = ResidentAnonymousKb();
            // An unaligned range: its partial first and last pages are cleared in place.
            long from = 100, to = size - 100;
            WeightMemory.ZeroOnDemand(p + from, to - from);
            long after = ResidentAnonymousKb();

            if (OperatingSystem.IsLinux())
            {
                // The whole pages inside (all but two of 16,384) are no longer resident.
                Assert.True(before - after > 48 * 1024, $"RssAnon went from {before} kB to {after} kB");
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

    private static long ResidentAnonymousKb()
    {
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }

        string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("RssAnon:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
    }
}
