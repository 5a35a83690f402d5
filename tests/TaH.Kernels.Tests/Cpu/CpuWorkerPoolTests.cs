using TaH.Kernels.Cpu;

namespace TaH.Kernels.Tests.Cpu;

public class CpuWorkerPoolTests
{
    private sealed class CountingJob(int items) : PoolJob
    {
        public int[] Runs { get; } = new int[items];

        public int[] Threads { get; } = new int[items];

        public override void Execute(int item)
        {
            Interlocked.Increment(ref Runs[item]);
            Threads[item] = Environment.CurrentManagedThreadId;
            Thread.SpinWait(200);
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 37)]
    [InlineData(3, 2)]
    [InlineData(3, 1000)]
    public void EveryItemRunsExactlyOnce(int threads, int items)
    {
        using var pool = new CpuWorkerPool(threads);
        for (int round = 0; round < 50; round++)
        {
            var job = new CountingJob(items);
            pool.Run(job, items);
            Assert.All(job.Runs, r => Assert.Equal(1, r));
        }
    }

    [Fact]
    public void WorkersTakeAShareOfALongRun()
    {
        // The first thread to take an item holds it until another thread has taken one: only a
        // worker that takes items ends the wait, however the threads are scheduled (CI shares its cores).
        using var pool = new CpuWorkerPool(2);
        var job = new PartnerJob();
        pool.Run(job, 1000);
        Assert.True(job.Partnered, "no worker thread took an item of a 1,000-item run within 30 s");
    }

    private sealed class PartnerJob : PoolJob
    {
        private readonly ManualResetEventSlim _partner = new();
        private int _first;

        public bool Partnered { get; private set; }

        public override void Execute(int item)
        {
            int self = Environment.CurrentManagedThreadId;
            int first = Interlocked.CompareExchange(ref _first, self, 0);
            if (first == 0)
            {
                Partnered = _partner.Wait(TimeSpan.FromSeconds(30));
            }
            else if (first != self)
            {
                _partner.Set();
            }
        }
    }

    [Fact]
    public void ConcurrentCallersEachGetTheirOwnRun()
    {
        using var pool = new CpuWorkerPool(2);
        var jobs = Enumerable.Range(0, 4).Select(i => new CountingJob(300 + i)).ToArray();
        Parallel.ForEach(jobs, job =>
        {
            for (int round = 0; round < 20; round++)
            {
                pool.Run(job, job.Runs.Length);
            }
        });
        Assert.All(jobs, job => Assert.All(job.Runs, r => Assert.Equal(20, r)));
    }

    private sealed class FailingJob : PoolJob
    {
        public override void Execute(int item)
        {
            if (item == 7)
            {
                throw new InvalidOperationException("item 7");
            }
        }
    }

    [Fact]
    public void AFailingItemSurfacesInTheCallerAndThePoolRunsOn()
    {
        using var pool = new CpuWorkerPool(2);
        var e = Assert.Throws<AggregateException>(() => pool.Run(new FailingJob(), 64));
        Assert.Equal("item 7", e.InnerException!.Message);
        var job = new CountingJob(64);
        pool.Run(job, 64);
        Assert.All(job.Runs, r => Assert.Equal(1, r));
    }

    [Fact]
    public void WorkBesideTheRunsGoesToAWorkerAndRunsGoOnWithoutIt()
    {
        using var pool = new CpuWorkerPool(2);
        using var started = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        int sideThread = 0;
        // The side action holds its worker until a run has completed: a run that waited for every
        // thread would never end, and the action's own wait would give up after 30 s.
        bool released = false;
        var side = pool.Beside(() =>
        {
            sideThread = Environment.CurrentManagedThreadId;
            started.Set();
            released = release.Wait(TimeSpan.FromSeconds(30));
        });
        Assert.True(started.Wait(TimeSpan.FromSeconds(30)));
        var job = new CountingJob(200);
        pool.Run(job, 200);
        Assert.All(job.Runs, r => Assert.Equal(1, r));
        Assert.False(side.IsDone);
        release.Set();
        side.Wait();
        Assert.True(released);
        Assert.NotEqual(Environment.CurrentManagedThreadId, sideThread);

        // Back among the workers afterwards.
        var partnered = new PartnerJob();
        pool.Run(partnered, 1000);
        Assert.True(partnered.Partnered);
    }

    [Fact]
    public void WorkBesideThatNoWorkerHasTakenRunsOnTheThreadWaitingForIt()
    {
        using var pool = new CpuWorkerPool(2);
        using var started = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        // The only worker is held by a first action, so the second waits for a worker that never comes.
        var first = pool.Beside(() =>
        {
            started.Set();
            release.Wait(TimeSpan.FromSeconds(30));
        });
        Assert.True(started.Wait(TimeSpan.FromSeconds(30)));
        int secondThread = 0;
        var second = pool.Beside(() => secondThread = Environment.CurrentManagedThreadId);
        Assert.False(second.IsDone);

        second.Wait();
        Assert.Equal(Environment.CurrentManagedThreadId, secondThread);
        Assert.False(first.IsDone);
        release.Set();
        first.Wait();
        Assert.True(first.IsDone);
    }

    [Fact]
    public void WorkBesideAPoolWithoutWorkersRunsInline()
    {
        using var pool = new CpuWorkerPool(1);
        int thread = 0;
        var side = pool.Beside(() => thread = Environment.CurrentManagedThreadId);
        Assert.True(side.IsDone);
        Assert.Equal(Environment.CurrentManagedThreadId, thread);
    }

    [Fact]
    public void AFailureBesideTheRunsSurfacesInWait()
    {
        using var pool = new CpuWorkerPool(2);
        var side = pool.Beside(() => throw new InvalidOperationException("beside"));
        var e = Assert.Throws<AggregateException>(side.Wait);
        Assert.Equal("beside", e.InnerException!.Message);
        var job = new CountingJob(64);
        pool.Run(job, 64);
        Assert.All(job.Runs, r => Assert.Equal(1, r));
    }
}
