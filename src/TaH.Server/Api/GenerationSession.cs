using System.Threading.Channels;
using TaH.Engine.Serving;
using TaH.Engine.Tokenization;
using TaH.Server.Hosting;
using TaH.Server.Output;

namespace TaH.Server.Api;

/// <summary>
/// The choices of one HTTP request in the engine: each is submitted with a token linked to the
/// client's connection (a client that goes away cancels it, which frees its KV blocks), read
/// through its own <see cref="ChoiceProcessor"/>, and merged into one ordered stream of deltas.
/// A stop string ends its choice in the engine at once.
/// </summary>
public sealed class GenerationSession : IAsyncDisposable
{
    private readonly List<Choice> _choices = [];
    private readonly Channel<(int Index, OutputDelta Delta)> _merged = Channel.CreateUnbounded<(int, OutputDelta)>(new UnboundedChannelOptions { SingleReader = true });
    private Task _readers = Task.CompletedTask;

    private GenerationSession(GenerationPlan plan) => Plan = plan;

    public GenerationPlan Plan { get; }

    /// <summary>Depths of every generated token of every choice.</summary>
    public DepthTally Depths
    {
        get
        {
            var total = new DepthTally();
            foreach (var c in _choices)
            {
                total.Add(c.Processor.Depths);
            }

            return total;
        }
    }

    /// <summary>
    /// Submits every choice (the plan's requests are admitted already). Refusals become API errors:
    /// 429 when the queue is full, 503 while draining. Choices submitted before a refusal are cancelled.
    /// </summary>
    public static GenerationSession Start(EngineLoop loop, TextTokenizer tokenizer, GenerationPlan plan, CancellationToken aborted)
    {
        var session = new GenerationSession(plan);
        try
        {
            // The choices of one prompt share a request: submitted together, they share its KV blocks.
            foreach (var group in plan.Choices.GroupBy(c => c.Request, ReferenceEqualityComparer.Instance))
            {
                var specs = group.ToArray();
                var cancels = specs.Select(_ => CancellationTokenSource.CreateLinkedTokenSource(aborted)).ToArray();
                try
                {
                    var streams = loop.SubmitGroup(specs[0].Request, [.. cancels.Select(c => c.Token)]);
                    for (int k = 0; k < specs.Length; k++)
                    {
                        session._choices.Add(new Choice(specs[k], streams[k], cancels[k], new ChoiceProcessor(tokenizer, plan.Output)));
                    }
                }
                catch
                {
                    foreach (var cancel in cancels)
                    {
                        cancel.Dispose();
                    }

                    throw;
                }
            }
        }
        catch (Exception e)
        {
            foreach (var c in session._choices)
            {
                c.Cancel.Cancel();
                c.Cancel.Dispose();
            }

            throw e switch
            {
                EngineOverloadedException => ApiException.Overloaded(e.Message),
                EngineStoppingException => ApiException.ShuttingDown(),
                _ => e,
            };
        }

        session._readers = Task.WhenAll(session._choices.Select(c => Task.Run(() => session.ReadChoiceAsync(c))));
        _ = session._readers.ContinueWith(t => session._merged.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
        return session;
    }

    /// <summary>The choices' deltas as they come; throws <see cref="EngineStoppingException"/> when the server ends them.</summary>
    public IAsyncEnumerable<(int Index, OutputDelta Delta)> ReadAllAsync(CancellationToken cancellationToken) =>
        _merged.Reader.ReadAllAsync(cancellationToken);

    private async Task ReadChoiceAsync(Choice c)
    {
        var writer = _merged.Writer;
        if (c.Spec.Echo is { Length: > 0 } echo)
        {
            writer.TryWrite((c.Spec.Index, new OutputDelta(echo, string.Empty, [], [], null)));
        }

        if (c.Spec.Prefill is { Length: > 0 } prefill && c.Processor.Prefill(prefill) is { } first)
        {
            writer.TryWrite((c.Spec.Index, first));
        }

        TaH.Engine.Generation.FinishReason? finish = null;
        try
        {
            await foreach (var e in c.Stream.Tokens.ReadAllAsync(c.Cancel.Token))
            {
                if (c.Processor.Add(e) is { } delta)
                {
                    writer.TryWrite((c.Spec.Index, delta));
                }

                if (c.Processor.StopStringMatched)
                {
                    c.Cancel.Cancel(); // ends the sequence in the engine and frees its blocks
                    break;
                }

                finish = e.Finish ?? finish;
            }
        }
        catch (OperationCanceledException) when (c.Cancel.IsCancellationRequested)
        {
            return; // the client went away (or the session was disposed); the engine was told through the token
        }

        if (finish is null && !c.Processor.StopStringMatched)
        {
            return; // cancelled before the end
        }

        writer.TryWrite((c.Spec.Index, c.Processor.Finish(finish)));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _choices)
        {
            await c.Cancel.CancelAsync(); // whatever still runs (an abandoned request) stops now
        }

        try
        {
            await _readers;
        }
        catch (Exception)
        {
            // Already reported to the reader of the merged stream.
        }

        foreach (var c in _choices)
        {
            c.Cancel.Dispose();
        }
    }

    private sealed record Choice(ChoiceSpec Spec, RequestStream Stream, CancellationTokenSource Cancel, ChoiceProcessor Processor);
}
