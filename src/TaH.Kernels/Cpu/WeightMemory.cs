using System.Runtime.InteropServices;

namespace TaH.Kernels.Cpu;

/// <summary>
/// Native memory for weight matrices: zeroed, 64-byte aligned, and on Linux in 2 MB pages where
/// transparent huge pages are available on request (<c>madvise</c>): the kernels stream hundreds of
/// MB per step, and with 4 KB pages that is a TLB miss, and a restart of the hardware prefetcher,
/// every 4 KB. <c>TAH_HUGE_PAGES=0</c> keeps 4 KB pages.
/// </summary>
public static unsafe partial class WeightMemory
{
    private const nuint HugePage = 2 << 20;
    private const int MadviseHugePage = 14; // MADV_HUGEPAGE
    private const int MadviseDontNeed = 4; // MADV_DONTNEED

    private static readonly bool UseHugePages = OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("TAH_HUGE_PAGES") != "0";

    internal static void* Allocate(long bytes)
    {
        if (!UseHugePages || bytes < (long)HugePage)
        {
            void* small = NativeMemory.AlignedAlloc((nuint)bytes, 64);
            NativeMemory.Clear(small, (nuint)bytes);
            return small;
        }

        // Only whole huge pages are advised: the tail stays in 4 KB pages, so no memory is wasted.
        void* p = NativeMemory.AlignedAlloc((nuint)bytes, HugePage);
        _ = Madvise(p, (nuint)bytes & ~(HugePage - 1), MadviseHugePage); // advice only
        NativeMemory.Clear(p, (nuint)bytes);
        return p;
    }

    internal static void Free(void* p) => NativeMemory.AlignedFree(p);

    /// <summary>
    /// Hands the C heap's free pages back to the system (glibc's <c>malloc_trim</c>): converting
    /// weights frees hundreds of MB of transient tensors, which would otherwise stay resident.
    /// </summary>
    public static void ReturnFreedMemory()
    {
        if (OperatingSystem.IsLinux())
        {
            try
            {
                _ = MallocTrim(0);
            }
            catch (EntryPointNotFoundException)
            {
                // Not glibc (musl): nothing to trim.
            }
        }
    }

    /// <summary>
    /// Zeroes <paramref name="bytes"/> at <paramref name="p"/> (private anonymous memory, as the C
    /// heap's is) without making them resident: on Linux the whole pages are dropped
    /// (<c>MADV_DONTNEED</c>, after which they read as zeros and take memory only once written),
    /// the partial pages at either end cleared. A KV pool sized for the worst case then costs
    /// what its sequences have written, not its size, from the moment it is made.
    /// </summary>
    public static void ZeroOnDemand(void* p, long bytes)
    {
        long page = Environment.SystemPageSize;
        long start = ((long)p + page - 1) & ~(page - 1), end = ((long)p + bytes) & ~(page - 1);
        if (OperatingSystem.IsLinux() && end > start && Madvise((void*)start, (nuint)(end - start), MadviseDontNeed) == 0)
        {
            NativeMemory.Clear(p, (nuint)(start - (long)p));
            NativeMemory.Clear((void*)end, (nuint)((long)p + bytes - end));
            return;
        }

        NativeMemory.Clear(p, (nuint)bytes);
    }

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);
}
