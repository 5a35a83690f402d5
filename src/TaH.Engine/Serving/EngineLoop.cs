using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using TaH.Engine.Generation;

namespace TaH.Engine.Serving;

/// <summary>The engine's state as the outside may read it between steps.</summary>
public sealed record EngineSnapshot(int Running, int Waiting, int TotalBlocks, int[] BlocksByDepth)
{
    public static EngineSnapshot Empty { get; } = new(0, 0, 0, []);
}

/// <summary>The queue is full: the caller should retry later (HTTP 429/503).</summary>
public sealed class EngineOverloadedException(string message) : Exception(message);

/// <summary>The engine is shutting down and takes no new requests.</summary>
public sealed class EngineStoppingException(string message) : Exception(message);

public sealed record EngineLoopOptions
{
    /// <summary>Requests queued for admission before new ones are refused.</summary>
    public int MaxWaiting { get; init; } = 256;

    /// <summary>Sequences decoded together at most.</summary>
    public int MaxRunning { get; init; } = 64;
}

/// <summary>One submitted request's tokens, in order; the last carries its finish reason.</summary>
public sealed class RequestStream
{
    internal RequestStream(GenerationRequest request, Channel<TokenEvent> channel)
    {
        Request = request;
        Channel = channel;
    }

    public GenerationRequest Request { get; }

    /// <summary>Completes after the token with a finish reason, or with the engine's error.</summary>
    public ChannelReader<TokenEvent> Tokens => Channel.Reader;

    internal Channel<TokenEvent> Channel { get; }

    internal long SubmittedAt { get; } = Stopwatch.GetTimestamp();

    internal long LastTokenAt { get; set; }

    internal Sequence? Sequence { get; set; }

    internal int ReservedBlocks { get; set; }
}

/// <summary>
/// The single thread that owns the <see cref="InferenceEngine"/>: requests come in through
/// <see cref="Submit"/>, wait in a FIFO queue until their worst-case KV blocks are free, then
/// run in the engine's steps; their tokens go out through per-request channels. Cancelling a
/// request's token frees its blocks at the next step boundary.
/// </summary>
public sealed class EngineLoop : IDisposable
{
    private readonly InferenceEngine _engine;
    private readonly TaHMetrics _metrics;
    private readonly EngineLoopOptions _options;
    private readonly ConcurrentQueue<Action> _commands = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly LinkedList<RequestStream> _waiting = new();
    private readonly List<RequestStream> _running = [];
    private int _waitingCount;
    private int _reservedBlocks;
    private volatile bool _stopping;
    private volatile EngineSnapshot _snapshot = EngineSnapshot.Empty;

    public EngineLoop(InferenceEngine engine, TaHMetrics metrics, EngineLoopOptions? options = null)
    {
        _engine = engine;
        _metrics = metrics;
        _options = options ?? new EngineLoopOptions();
        _metrics.Observe(() => _snapshot);
        UpdateSnapshot();
    }

    public InferenceEngine Engine => _engine;

    public EngineSnapshot Snapshot => _snapshot;

    /// <summary>
    /// Queues a request. Throws <see cref="ArgumentException"/> for a request the model cannot run,
    /// <see cref="EngineOverloadedException"/> when the queue is full and
    /// <see cref="EngineStoppingException"/> during shutdown. Cancelling
    /// <paramref name="cancellationToken"/> (a client that went away) stops it and frees its blocks.
    /// </summary>
    public RequestStream Submit(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        if (_stopping)
        {
            throw new EngineStoppingException("the server is shutting down");
        }

        _engine.Validate(request);
        int blocks = EngineOptions.BlocksFor(request, _engine.Model.MaxDepth, _engine.Cache.BlockSize);
        if (blocks > _engine.Cache.TotalBlocks)
        {
            throw new ArgumentException(
                $"the request may need {blocks} KV blocks (prompt {request.PromptTokens.Count} + max_tokens {request.MaxTokens} at {_engine.Model.MaxDepth} depths), " +
                $"more than the pool's {_engine.Cache.TotalBlocks}; lower max_tokens",
                nameof(request));
        }

        if (Interlocked.Increment(ref _waitingCount) > _options.MaxWaiting)
        {
            Interlocked.Decrement(ref _waitingCount);
            throw new EngineOverloadedException($"the queue is full ({_options.MaxWaiting} requests waiting); retry later");
        }

        var stream = new RequestStream(request, Channel.CreateUnbounded<TokenEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true }))
        {
            ReservedBlocks = blocks,
        };
        _commands.Enqueue(() => _waiting.AddLast(stream));
        if (cancellationToken.CanBeCanceled)
        {
            cancellationToken.Register(() => Post(() => CancelRequest(stream)));
        }

        _signal.Release();
        return stream;
    }

    /// <summary>Runs the loop on its own thread until <paramref name="stoppingToken"/> fires and the work drains.</summary>
    public Task RunAsync(CancellationToken stoppingToken) =>
        Task.Factory.StartNew(() => Loop(stoppingToken), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>
    /// Stops taking requests, lets those in flight finish for up to <paramref name="grace"/>, then
    /// ends the rest: their token streams complete with an <see cref="EngineStoppingException"/>.
    /// </summary>
    public async Task DrainAsync(TimeSpan grace)
    {
        _stopping = true;
        var deadline = Stopwatch.GetTimestamp() + (long)(grace.TotalSeconds * Stopwatch.Frequency);
        while (_snapshot.Running + _snapshot.Waiting > 0 && Stopwatch.GetTimestamp() < deadline)
        {
            await Task.Delay(20).ConfigureAwait(false);
        }

        var done = new TaskCompletionSource();
        Post(() =>
        {
            foreach (var stream in _running.Concat(_waiting).ToList())
            {
                CancelRequest(stream, tell: true);
            }

            done.SetResult();
        });
        await done.Task.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
    }

    private void Post(Action command)
    {
        _commands.Enqueue(command);
        _signal.Release();
    }

    private void Loop(CancellationToken stoppingToken)
    {
        while (true)
        {
            while (_commands.TryDequeue(out var command))
            {
                command();
            }

            Admit();
            UpdateSnapshot();
            if (_running.Count == 0)
            {
                if (stoppingToken.IsCancellationRequested)
                {
                    return;
                }

                try
                {
                    _signal.Wait(stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    // Woken to stop: drain what is queued, then leave.
                }

                continue;
            }

            StepOnce();
        }
    }

    private void Admit()
    {
        while (_waiting.First is { } node && _running.Count < _options.MaxRunning
               && _reservedBlocks + node.Value.ReservedBlocks <= _engine.Cache.TotalBlocks)
        {
            var stream = node.Value;
            _waiting.RemoveFirst();
            Interlocked.Decrement(ref _waitingCount);
            stream.Sequence = _engine.Add(stream.Request);
            _reservedBlocks += stream.ReservedBlocks;
            _running.Add(stream);
        }
    }

    private void StepOnce()
    {
        IReadOnlyList<(Sequence Sequence, TokenEvent Event)> events;
        try
        {
            events = _engine.Step();
        }
        catch (Exception e)
        {
            // A failed step leaves its sequences in an unknown state: end them all with the error.
            foreach (var stream in _running.ToList())
            {
                stream.Channel.Writer.TryComplete(e);
                Release(stream, cancelSequence: true);
            }

            return;
        }

        long now = Stopwatch.GetTimestamp();
        foreach (var (sequence, e) in events)
        {
            var stream = _running.Find(s => s.Sequence == sequence);
            if (stream is null)
            {
                continue;
            }

            if (stream.LastTokenAt == 0)
            {
                _metrics.FirstToken(Stopwatch.GetElapsedTime(stream.SubmittedAt, now));
            }
            else
            {
                _metrics.InterToken(Stopwatch.GetElapsedTime(stream.LastTokenAt, now));
            }

            stream.LastTokenAt = now;
            _metrics.Token(stream.Request.Policy, e.Depth, e.ContinueProbability);
            stream.Channel.Writer.TryWrite(e);
            if (e.Finish is { } finish)
            {
                _metrics.Finished(stream.Request.Policy, finish.ToString().ToLowerInvariant(), stream.Request.PromptTokens.Count, Stopwatch.GetElapsedTime(stream.SubmittedAt, now));
                stream.Channel.Writer.TryComplete();
                Release(stream, cancelSequence: false);
            }
        }
    }

    private void CancelRequest(RequestStream stream, bool tell = false)
    {
        if (_waiting.Remove(stream))
        {
            Interlocked.Decrement(ref _waitingCount);
        }
        else if (!_running.Contains(stream))
        {
            return; // already finished
        }
        else
        {
            Release(stream, cancelSequence: true);
        }

        _metrics.Finished(stream.Request.Policy, "cancelled", stream.Request.PromptTokens.Count, Stopwatch.GetElapsedTime(stream.SubmittedAt));
        stream.Channel.Writer.TryComplete(tell ? new EngineStoppingException("the server shut down before this request finished") : null);
    }

    private void Release(RequestStream stream, bool cancelSequence)
    {
        if (_running.Remove(stream))
        {
            _reservedBlocks -= stream.ReservedBlocks;
            if (cancelSequence && stream.Sequence is { } sequence)
            {
                _engine.Cancel(sequence);
            }
        }
    }

    private void UpdateSnapshot()
    {
        var byDepth = new int[_engine.Model.MaxDepth];
        foreach (var stream in _running)
        {
            if (stream.Sequence is { } sequence)
            {
                for (int d = 1; d <= byDepth.Length; d++)
                {
                    byDepth[d - 1] += sequence.BlockCount(d);
                }
            }
        }

        _snapshot = new EngineSnapshot(_running.Count, Volatile.Read(ref _waitingCount), _engine.Cache.TotalBlocks, byDepth);
    }

    public void Dispose() => _signal.Dispose();
}
