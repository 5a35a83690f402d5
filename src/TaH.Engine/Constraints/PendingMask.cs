namespace TaH.Engine.Constraints;

/// <summary>
/// A mask being computed on a thread-pool worker while the step's forward runs. Whoever needs it
/// first and finds it not started computes it on the spot (a sampler blocked on a queued item
/// would starve the pool it runs on); one already running is waited for, blocking, not spinning.
/// </summary>
internal sealed class PendingMask
{
    private const int Queued = 0, Running = 1, Done = 2;

    private readonly ConstraintMatcher _matcher;
    private readonly object _gate = new();
    private int _state;
    private TokenMask? _mask;
    private Exception? _error;

    private PendingMask(ConstraintMatcher matcher) => _matcher = matcher;

    public static PendingMask Start(ConstraintMatcher matcher)
    {
        var pending = new PendingMask(matcher);
        ThreadPool.UnsafeQueueUserWorkItem(static p => p.TryRun(), pending, preferLocal: false);
        return pending;
    }

    public TokenMask Get()
    {
        if (!TryRun() && Volatile.Read(ref _state) != Done)
        {
            lock (_gate)
            {
                while (Volatile.Read(ref _state) != Done)
                {
                    Monitor.Wait(_gate);
                }
            }
        }

        if (_error is { } e)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
        }

        return _mask!;
    }

    private bool TryRun()
    {
        if (Interlocked.CompareExchange(ref _state, Running, Queued) != Queued)
        {
            return false;
        }

        try
        {
            _mask = _matcher.ComputeMask();
        }
        catch (Exception e)
        {
            _error = e;
        }

        lock (_gate)
        {
            Volatile.Write(ref _state, Done);
            Monitor.PulseAll(_gate);
        }

        return true;
    }
}
