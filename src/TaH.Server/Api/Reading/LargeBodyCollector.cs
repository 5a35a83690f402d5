using System.Runtime;

namespace TaH.Server.Api.Reading;

/// <summary>
/// Gives back the memory a large body's request used. Binding, rendering and tokenizing a
/// megabytes-long body leaves megabytes of garbage in the large-object heap and gen2, which the
/// GC collects only when gen2's budget runs out: under light traffic, never, and the process
/// keeps it (issue 11: 1.45 GB a minute after twelve rounds of 3 MB bodies). After such a request
/// completes, one aggressive collection (compacting, decommitting) runs; requests that complete
/// while it runs get one more, so a burst costs one or two collections, not one each.
/// </summary>
internal static class LargeBodyCollector
{
    /// <summary>Bodies from this size on are worth a full collection once they are done with.</summary>
    public const int ThresholdBytes = 1 << 20;

    private static int _requested;
    private static int _running;

    public static void AfterResponse(Microsoft.AspNetCore.Http.HttpContext context) =>
        context.Response.OnCompleted(() =>
        {
            Interlocked.Increment(ref _requested);
            if (Interlocked.Exchange(ref _running, 1) == 0)
            {
                _ = Task.Run(Collect);
            }

            return Task.CompletedTask;
        });

    private static void Collect()
    {
        while (true)
        {
            int seen = Volatile.Read(ref _requested);
            GCSettings.LargeObjectHeapCompactionMode = GCLargeObjectHeapCompactionMode.CompactOnce;
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            Volatile.Write(ref _running, 0);

            // Completed meanwhile: collect again, unless another collector has started.
            if (Volatile.Read(ref _requested) == seen || Interlocked.Exchange(ref _running, 1) != 0)
            {
                return;
            }
        }
    }
}
