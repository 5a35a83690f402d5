using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using TaH.Engine.Generation;

namespace TaH.Engine.Serving;

/// <summary>The engine's state as the outside may read it between steps.</summary>
public sealed record EngineSnapshot(int Running, int Waiting, int TotalBlocks, int[] BlocksByDepth, int CachedBlocks)
{
    public static EngineSnapshot Empty { get; } = new(0, 0, 0, [], 0);
}

/// <summary>The queue is full: the caller should retry later (HTTP 429/503).</summary>
public sealed class EngineOverloadedException(string message) : Exception(message);

/// <summary>The engine is shutting down and takes no new requests.</summary>
public sealed class EngineStoppingException(string message) : Exception(message);

public sealed record EngineLoopOptions
{
    /// <summary>Requests queued for admission before new ones are refused.</summary>
    public int MaxWaiting { get; init; } = 256;
}

/// <summary>One sequence's tokens, in order; the last carries its finish reason.</summary>
public sealed class RequestStream
{
    internal RequestStream(GenerationRequest request, int index)
    {
        Request = request;
        Index = index;
    }

    public GenerationRequest Request { get; }

    /// <summary>Which of the request's n parallel samples this is.</summary>
    public int Index { get; }

    /// <summary>Completes after the token with a finish reason, or with the engine's error.</summary>
    public ChannelReader<TokenEvent> Tokens => Channel.Reader;

    internal Channel<TokenEvent> Channel { get; } =
        System.Threading.Channels.Channel.CreateUnbounded<TokenEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    internal long SubmittedAt { get; } = Stopwatch.GetTimestamp();

    internal long LastTokenAt { get; set; }

    internal Sequence? Sequence { get; set; }

    internal bool Done { get; set; }
}

/// <summary>
/// The single thread that owns the <see cref="InferenceEngine"/>: requests come in through
/// <see cref="Submit"/> and queue in the engine's scheduler; their tokens go out through one
/// channel per sequence. Cancelling a request's token frees its blocks at the next step boundary.
/// </summary>
public sealed class EngineLoop : IDisposable
{
    private readonly InferenceEngine _engine;
    private readonly TaHMetrics _metrics;
    private readonly EngineLoopOptions _options;
    private readonly ConcurrentQueue<Action> _commands = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly Dictionary<Sequence, RequestStream> _bySequence = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<GenerationRequest, List<RequestStream>> _unboundForks = new(ReferenceEqualityComparer.Instance);
    private int _queued;
    private volatile bool _stopping;
    private volatile EngineSnapshot _snapshot = EngineSnapshot.Empty;

    public EngineLoop(InferenceEngine engine, TaHMetrics metrics, EngineLoopOptions? options = null)
    {
        _engine = engine;
        _metrics = metrics;
        _options = options ?? new EngineLoopOptions();
        _metrics.Observe(() => _snapshot, () => (_engine.Preemptions, _engine.CachedPromptTokens));
        UpdateSnapshot();
    }

    public InferenceEngine Engine => _engine;

    public EngineSnapshot Snapshot => _snapshot;

    /// <summary>
    /// Admits a request (<see cref="AdmissionGate"/>), queues it and returns its token stream (see
    /// <see cref="SubmitGroup(AdmittedRequest, IReadOnlyList{CancellationToken})"/> for n &gt; 1).
    /// Throws <see cref="InvalidRequestException"/> for a request the model cannot run,
    /// <see cref="EngineOverloadedException"/> when the queue is full and
    /// <see cref="EngineStoppingException"/> during shutdown. Cancelling
    /// <paramref name="cancellationToken"/> (a client that went away) stops it and frees its blocks.
    /// </summary>
    public RequestStream Submit(GenerationRequest request, CancellationToken cancellationToken = default) =>
        SubmitGroup(_engine.Admission.Admit(request with { N = 1 }), [cancellationToken])[0];

    /// <summary>
    /// Queues an admitted request with <see cref="GenerationRequest.N"/> parallel samples sharing
    /// its prompt blocks, with one cancellation token per sample, so one sample can end (a stop
    /// string) while the others go on.
    /// </summary>
    public IReadOnlyList<RequestStream> SubmitGroup(AdmittedRequest admitted, IReadOnlyList<CancellationToken> cancellations)
    {
        var request = admitted.Request;
        if (cancellations.Count != request.N)
        {
            throw new ArgumentException($"one cancellation token per sample: {request.N} expected, {cancellations.Count} given", nameof(cancellations));
        }

        if (_stopping)
        {
            throw new EngineStoppingException("the server is shutting down");
        }

        // Requests that will start at once, in a free running slot, are not waiting: only what is
        // left over counts against the queue's bound.
        var snapshot = _snapshot;
        int freeSlots = Math.Max(0, _engine.Options.MaxRunning - snapshot.Running);
        if (Interlocked.Increment(ref _queued) + snapshot.Waiting > _options.MaxWaiting + freeSlots)
        {
            Interlocked.Decrement(ref _queued);
            throw new EngineOverloadedException($"the queue is full ({_options.MaxWaiting} requests waiting); retry later");
        }

        var streams = Enumerable.Range(0, request.N).Select(i => new RequestStream(request, i)).ToArray();
        Post(() =>
        {
            Interlocked.Decrement(ref _queued);
            if (streams.All(s => s.Done))
            {
                return; // cancelled before it reached the engine
            }

            var sequence = _engine.Add(admitted);
            streams[0].Sequence = sequence;
            _bySequence[sequence] = streams[0];
            if (streams.Length > 1)
            {
                _unboundForks[request] = [.. streams.Skip(1)];
            }
        });
        for (int i = 0; i < streams.Length; i++)
        {
            var stream = streams[i];
            if (cancellations[i].CanBeCanceled)
            {
                cancellations[i].Register(() => Post(() => Cancel(stream, tell: false)));
            }
        }

        return streams;
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
        while (_snapshot.Running + _snapshot.Waiting + Volatile.Read(ref _queued) > 0 && Stopwatch.GetTimestamp() < deadline)
        {
            await Task.Delay(20).ConfigureAwait(false);
        }

        var done = new TaskCompletionSource();
        Post(() =>
        {
            foreach (var stream in _bySequence.Values.Concat(_unboundForks.Values.SelectMany(s => s)).ToList())
            {
                Cancel(stream, tell: true);
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

            UpdateSnapshot();
            if (!_engine.HasWork)
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
            foreach (var stream in _bySequence.Values.ToList())
            {
                stream.Channel.Writer.TryComplete(e);
                Cancel(stream, tell: false);
            }

            return;
        }

        long now = Stopwatch.GetTimestamp();
        foreach (var (sequence, e) in events)
        {
            if (StreamOf(sequence) is not { } stream)
            {
                continue;
            }

            _metrics.Token(stream.Request.Policy, e.Depth, e.ContinueProbability);
            if (stream.LastTokenAt == 0)
            {
                _metrics.FirstToken(Stopwatch.GetElapsedTime(stream.SubmittedAt, now));
            }
            else
            {
                _metrics.InterToken(Stopwatch.GetElapsedTime(stream.LastTokenAt, now));
            }

            stream.LastTokenAt = now;
            stream.Channel.Writer.TryWrite(e);
            if (e.Finish is { } finish)
            {
                _metrics.Finished(stream.Request.Policy, finish.ToString().ToLowerInvariant(), stream.Request.PromptTokens.Count, Stopwatch.GetElapsedTime(stream.SubmittedAt, now));
                stream.Channel.Writer.TryComplete();
                stream.Done = true;
                _bySequence.Remove(sequence);
            }
        }
    }

    /// <summary>The stream of a sequence; a fork takes the next unbound stream of its request.</summary>
    private RequestStream? StreamOf(Sequence sequence)
    {
        if (_bySequence.TryGetValue(sequence, out var stream))
        {
            return stream;
        }

        if (_unboundForks.TryGetValue(sequence.Request, out var waiting))
        {
            stream = waiting.FirstOrDefault(s => !s.Done);
            if (stream is not null)
            {
                waiting.Remove(stream);
                stream.Sequence = sequence;
                _bySequence[sequence] = stream;
            }

            if (waiting.Count == 0)
            {
                _unboundForks.Remove(sequence.Request);
            }

            if (stream is null)
            {
                _engine.Cancel(sequence); // its stream was cancelled before it existed
            }
        }

        return stream;
    }

    private void Cancel(RequestStream stream, bool tell)
    {
        if (stream.Done)
        {
            return;
        }

        stream.Done = true;
        if (stream.Sequence is { } sequence)
        {
            _bySequence.Remove(sequence);
            _engine.Cancel(sequence);
        }

        _metrics.Finished(stream.Request.Policy, "cancelled", stream.Request.PromptTokens.Count, Stopwatch.GetElapsedTime(stream.SubmittedAt));
        stream.Channel.Writer.TryComplete(tell ? new EngineStoppingException("the server shut down before this request finished") : null);
    }

    private void UpdateSnapshot()
    {
        var cache = _engine.Cache;
        _snapshot = new EngineSnapshot(
            _engine.RunningCount,
            _engine.WaitingCount,
            cache.TotalBlocks,
            [.. Enumerable.Range(1, _engine.Model.MaxDepth).Select(cache.UsedBlocks)],
            cache.CachedBlocks);
    }

    public void Dispose() => _signal.Dispose();
}
