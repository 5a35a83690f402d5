namespace TaH.Engine.Generation;

/// <summary>Per-sequence work of a step after the forward, when the kernel pool is idle.</summary>
internal static class RowParallel
{
    /// <summary>
    /// Runs <paramref name="body"/> for 0 .. <paramref name="count"/> - 1, in parallel when there are
    /// several. A lone one runs on the calling thread: Parallel.For would wake a thread-pool worker
    /// for it every step, onto a core the kernel pool is using.
    /// </summary>
    public static void For(int count, Action<int> body)
    {
        if (count == 1)
        {
            body(0);
        }
        else
        {
            Parallel.For(0, count, body);
        }
    }
}
