using System.Diagnostics;

namespace TaH.Kernels.Cpu;

/// <summary>Work that a <see cref="CpuWorkerPool"/> splits into numbered items.</summary>
public abstract class PoolJob
{
    /// <summary>Runs one item; items of one run may go to any thread, in any order.</summary>
    public abstract void Execute(int item);
}

/// <summary>
/// A persistent pool for the CPU weight kernels: the calling thread and <c>threads - 1</c> workers
/// take items from a shared counter, so a thread the OS deschedules (another process holds its
/// core) delays nobody: the others take its share, and the caller waits only for items already
/// claimed. Idle workers spin for <see cref="SpinTicks"/> (consecutive kernels of a step follow
/// each other within microseconds), then block on an event, so they never compete for long with
/// libtorch's OpenMP threads, which run the ops between kernels while this pool is idle. One run
/// at a time: concurrent callers queue on a lock (so a job must not run the pool itself). A run
/// allocates nothing. A worker can also be lent for work beside the runs (<see cref="Beside"/>),
/// which the runs meanwhile do without.
/// </summary>
public sealed class CpuWorkerPool : IDisposable
{
    // The run state in one word, so one compare-exchange both claims an item and proves that the
    // run it belongs to is still the current one: generation | items | next item.
    private const int CountBits = 20;
    private const long CountMask = (1L << CountBits) - 1;

    /// <summary>The most items one run may have.</summary>
    public const int MaxItems = (int)CountMask;

    private static readonly long SpinTicks = Stopwatch.Frequency / 20_000; // 50 us

    private readonly object _gate = new();
    private readonly Worker[] _workers;
    private PoolJob? _job;
    private SideTask? _side;
    private long _state;
    private int _completed;
    private Exception? _error;
    private volatile bool _disposed;

    public CpuWorkerPool(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        _workers = new Worker[threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            _workers[i] = new Worker(this, i);
        }
    }

    /// <summary>The process's pool: <c>TAH_CPU_THREADS</c> threads, else one per logical CPU.</summary>
    public static CpuWorkerPool Shared { get; } = new(
        int.TryParse(Environment.GetEnvironmentVariable("TAH_CPU_THREADS"), out int n) && n > 0 ? n : Environment.ProcessorCount);

    /// <summary>The caller and the workers.</summary>
    public int Threads => _workers.Length + 1;

    /// <summary>Of <paramref name="count"/> units, how many one item takes when each thread gets one contiguous range.</summary>
    public int EvenShare(int count) => (count + Threads - 1) / Threads;

    /// <summary>Runs items 0 .. <paramref name="items"/> - 1 of <paramref name="job"/> and returns when all are done.</summary>
    public void Run(PoolJob job, int items)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(items, MaxItems);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (items <= 0)
        {
            return;
        }

        if (items == 1 || _workers.Length == 0)
        {
            for (int i = 0; i < items; i++)
            {
                job.Execute(i);
            }

            return;
        }

        lock (_gate)
        {
            _job = job;
            _completed = 0;
            _error = null;
            long generation = (Volatile.Read(ref _state) >> (2 * CountBits)) + 1;
            Volatile.Write(ref _state, (generation << (2 * CountBits)) | ((long)items << CountBits));
            foreach (var worker in _workers)
            {
                worker.Wake();
            }

            Work();
            var spin = default(SpinWait);
            while (Volatile.Read(ref _completed) < items)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            _job = null;
            if (_error is { } error)
            {
                throw new AggregateException("a CPU kernel failed", error);
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> on a worker while the caller goes on (inline, before this
    /// returns, when the pool has no worker or another action still waits for one). Runs started in the
    /// meantime go to the other threads: the busy worker takes no items until the action is done.
    /// Wait on the result before reading what the action wrote; a wait that finds the action not yet
    /// taken by any worker runs it itself.
    /// </summary>
    public SideTask Beside(Action action)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var task = new SideTask(this, action);
        if (_workers.Length == 0 || Interlocked.CompareExchange(ref _side, task, null) is not null)
        {
            task.Run();
            return task;
        }

        foreach (var worker in _workers)
        {
            worker.Wake();
        }

        return task;
    }

    private SideTask? TakeSide() => Volatile.Read(ref _side) is null ? null : Interlocked.Exchange(ref _side, null);

    /// <summary>Takes <paramref name="task"/> back if no worker has taken it yet.</summary>
    internal bool Reclaim(SideTask task) => Interlocked.CompareExchange(ref _side, null, task) == task;

    /// <summary>Claims and runs items of the current run until none are left.</summary>
    private void Work()
    {
        while (true)
        {
            long state = Volatile.Read(ref _state);
            long next = state & CountMask, items = (state >> CountBits) & CountMask;
            if (next >= items)
            {
                return;
            }

            if (Interlocked.CompareExchange(ref _state, state + 1, state) != state)
            {
                continue;
            }

            // The claim succeeded on a run with items left, so that run is still waiting: _job is its job.
            try
            {
                _job!.Execute((int)next);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
            }

            Interlocked.Increment(ref _completed);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        foreach (var worker in _workers)
        {
            worker.Stop();
        }

        TakeSide()?.Run(); // handed over, but no worker took it
    }

    private sealed class Worker
    {
        private readonly CpuWorkerPool _pool;
        private readonly ManualResetEventSlim _wake = new(false, spinCount: 1);
        private readonly Thread _thread;
        private int _sleeping;

        public Worker(CpuWorkerPool pool, int index)
        {
            _pool = pool;
            _thread = new Thread(Loop) { IsBackground = true, Name = $"tah-cpu-{index + 1}" };
            _thread.Start();
        }

        public void Wake()
        {
            if (Interlocked.Exchange(ref _sleeping, 0) == 1)
            {
                _wake.Set();
            }
        }

        public void Stop()
        {
            Interlocked.Exchange(ref _sleeping, 0);
            _wake.Set();
            _thread.Join();
        }

        private void Loop()
        {
            long seen = 0;
            while (!_pool._disposed)
            {
                if (_pool.TakeSide() is { } side)
                {
                    side.Run();
                    continue;
                }

                long generation = Volatile.Read(ref _pool._state) >> (2 * CountBits);
                if (generation != seen)
                {
                    seen = generation;
                    _pool.Work();
                    continue;
                }

                if (!SpinFor(seen))
                {
                    Sleep(seen);
                }
            }
        }

        /// <summary>A new run, work beside the runs, or the end.</summary>
        private bool HasWork(long seen) =>
            Volatile.Read(ref _pool._state) >> (2 * CountBits) != seen || Volatile.Read(ref _pool._side) is not null || _pool._disposed;

        /// <summary>Spins briefly for a new run; true when one came.</summary>
        private bool SpinFor(long seen)
        {
            long until = Stopwatch.GetTimestamp() + SpinTicks;
            do
            {
                Thread.SpinWait(16);
                if (HasWork(seen))
                {
                    return true;
                }
            }
            while (Stopwatch.GetTimestamp() < until);
            return false;
        }

        private void Sleep(long seen)
        {
            _wake.Reset();
            Interlocked.Exchange(ref _sleeping, 1);
            // Work published between the spin and the flag would not wake us: look once more.
            if (HasWork(seen))
            {
                Interlocked.Exchange(ref _sleeping, 0);
                return;
            }

            _wake.Wait();
        }
    }
}

/// <summary>Work a <see cref="CpuWorkerPool"/> runs beside its runs (see <see cref="CpuWorkerPool.Beside"/>).</summary>
public sealed class SideTask
{
    private readonly CpuWorkerPool _pool;
    private readonly Action _action;
    private volatile bool _done;
    private Exception? _error;

    internal SideTask(CpuWorkerPool pool, Action action)
    {
        _pool = pool;
        _action = action;
    }

    public bool IsDone => _done;

    /// <summary>
    /// Returns once the action has run (here, if no worker has taken it: the one it went to may be
    /// descheduled, and the caller is waiting anyway); rethrows what it threw.
    /// </summary>
    public void Wait()
    {
        if (!_done && _pool.Reclaim(this))
        {
            Run();
        }

        // No Sleep(1) while it finishes: the wait is a fraction of a millisecond, and a sleep is one.
        var spin = default(SpinWait);
        while (!_done)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }

        if (_error is { } error)
        {
            throw new AggregateException("work beside the CPU kernels failed", error);
        }
    }

    internal void Run()
    {
        try
        {
            _action();
        }
        catch (Exception e)
        {
            _error = e;
        }
        finally
        {
            _done = true;
        }
    }
}
