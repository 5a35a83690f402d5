using System.Diagnostics;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using TaH.Engine.Serving;
using TaH.Server.Api.Planning;
using TaH.Server.Api.Reading;
using TaH.Server.Hosting;
using TaH.Server.Output;

namespace TaH.Server.Api;

/// <summary>
/// POST /v1/chat/completions and /v1/completions: read → validate (<see cref="RequestPlanner"/>)
/// → submit (<see cref="GenerationSession"/>) → deltas → server-sent events or one JSON body.
/// </summary>
public sealed class CompletionEndpoints(ModelHost host, RequestPlanner planner, ILogger<CompletionEndpoints> logger)
{
    public async Task ChatAsync(HttpContext context)
    {
        var body = await RequestBody.ReadAsync<ChatCompletionRequest>(context);
        var loop = host.RequireReady();
        var plan = planner.PlanChat(body);
        await RunAsync(context, loop, plan, "chat.completions", "chatcmpl-", WriteChatStreamAsync, WriteChatResponseAsync);
    }

    public async Task CompletionAsync(HttpContext context)
    {
        var body = await RequestBody.ReadAsync<CompletionRequest>(context);
        var loop = host.RequireReady();
        var plan = planner.PlanCompletion(body);
        await RunAsync(context, loop, plan, "completions", "cmpl-", WriteCompletionStreamAsync, WriteCompletionResponseAsync);
    }

    private delegate Task Writer(HttpContext context, GenerationSession session, string id, long created);

    private async Task RunAsync(HttpContext context, EngineLoop loop, GenerationPlan plan, string endpoint, string idPrefix, Writer stream, Writer whole)
    {
        var started = Stopwatch.GetTimestamp();
        string id = idPrefix + Guid.NewGuid().ToString("N");
        string requestId = context.Request.Headers["X-Request-Id"].FirstOrDefault() is { Length: > 0 and <= 128 } given ? given : id;
        context.Response.Headers["X-Request-Id"] = requestId;
        using var activity = Telemetry.Source.StartActivity(endpoint);
        activity?.SetTag("gen_ai.system", "tah");
        activity?.SetTag("gen_ai.request.model", plan.Model);
        activity?.SetTag("gen_ai.response.id", id);
        activity?.SetTag("tah.policy", plan.Policy.ToString());

        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string outcome = "ok";
        await using var session = GenerationSession.Start(loop, host.Tokenizer, plan, context.RequestAborted);
        try
        {
            await (plan.Stream ? stream : whole)(context, session, id, created);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            outcome = "client_disconnected";
        }
        catch (EngineStoppingException e) when (!context.Response.HasStarted)
        {
            outcome = "shutdown";
            throw ApiException.Unavailable(e.Message, "server_shutting_down", 5);
        }
        finally
        {
            var depths = session.Depths;
            var latency = Stopwatch.GetElapsedTime(started);
            activity?.SetTag("gen_ai.usage.input_tokens", plan.PromptTokens);
            activity?.SetTag("gen_ai.usage.output_tokens", depths.Tokens);
            activity?.SetTag("tah.depth2_tokens", depths.Depth2Tokens);
            activity?.SetTag("tah.depth2_share", depths.Depth2Share);
            activity?.SetTag("tah.outcome", outcome);
            logger.LogInformation(
                "{Endpoint} {RequestId} model={Model} policy={Policy} prompt_tokens={PromptTokens} completion_tokens={CompletionTokens} depth2_tokens={Depth2Tokens} depth2_share={Depth2Share:F4} latency_ms={LatencyMs:F1} stream={Stream} n={Choices} outcome={Outcome} user={User}",
                endpoint, requestId, plan.Model, plan.Policy.ToString(), plan.PromptTokens, depths.Tokens, depths.Depth2Tokens, depths.Depth2Share,
                latency.TotalMilliseconds, plan.Stream, plan.Choices.Count, outcome, plan.User);
        }
    }

    private Usage UsageOf(GenerationSession session)
    {
        var d = session.Depths;
        return new Usage(session.Plan.PromptTokens, d.Tokens, session.Plan.PromptTokens + d.Tokens,
            new TaHUsage(d.Depth2Tokens, Math.Round(d.Depth2Share, 6), Math.Round(d.AverageDepth, 6), session.Plan.Policy.ToString()));
    }

    private async Task WriteChatStreamAsync(HttpContext context, GenerationSession session, string id, long created)
    {
        var plan = session.Plan;
        var ct = context.RequestAborted;
        var logprobs = new LogprobFormatter(host.Tokenizer);
        await Sse.StartAsync(context);
        foreach (var choice in plan.Choices)
        {
            await Sse.WriteAsync(context, new ChatCompletionChunk(id, created, plan.Model,
                [new ChatChunkChoice(choice.Index, new ChatDelta("assistant", string.Empty, null, null), null, null, null)], null), ct);
        }

        var toolIndex = new Dictionary<int, int>();
        await StreamDeltasAsync(context, session, (index, d) =>
        {
            List<ToolCallDelta>? calls = null;
            if (d.ToolCalls.Count > 0)
            {
                int next = toolIndex.GetValueOrDefault(index);
                calls = [.. d.ToolCalls.Select((c, k) => new ToolCallDelta(next + k, c.Id, new FunctionCallOut(c.Name, c.Arguments)))];
                toolIndex[index] = next + d.ToolCalls.Count;
            }

            var delta = new ChatDelta(null, NullIfEmpty(d.Content), NullIfEmpty(d.Reasoning), calls);
            var choice = new ChatChunkChoice(index, delta,
                plan.Logprobs && d.Tokens.Count > 0 ? logprobs.Chat(d.Tokens) : null,
                d.FinishReason,
                d.Tokens.Count > 0 ? DepthsOf(d.Tokens) : null);
            return new ChatCompletionChunk(id, created, plan.Model, [choice], null);
        }, () => new ChatCompletionChunk(id, created, plan.Model, [], UsageOf(session)));
    }

    private async Task WriteChatResponseAsync(HttpContext context, GenerationSession session, string id, long created)
    {
        var plan = session.Plan;
        var outputs = await CollectAsync(session, context.RequestAborted);
        var logprobs = new LogprobFormatter(host.Tokenizer);
        var choices = outputs.Select(p =>
        {
            var o = p.Value;
            var content = o.Content.ToString();
            var message = new AssistantMessage(
                o.Calls.Count > 0 && string.IsNullOrWhiteSpace(content) ? null : content,
                o.Reasoning.Length > 0 ? o.Reasoning.ToString() : null,
                o.Calls.Count > 0 ? [.. o.Calls.Select(c => new ToolCallOut(c.Id, new FunctionCallOut(c.Name, c.Arguments)))] : null);
            return new ChatChoice(p.Key, message, plan.Logprobs ? logprobs.Chat(o.Tokens) : null, o.Finish ?? "stop", DepthsOf(o.Tokens));
        }).ToList();
        await WriteJsonAsync(context, new ChatCompletionResponse(id, created, plan.Model, choices, UsageOf(session)));
    }

    private async Task WriteCompletionStreamAsync(HttpContext context, GenerationSession session, string id, long created)
    {
        var plan = session.Plan;
        var logprobs = new LogprobFormatter(host.Tokenizer);
        var offsets = new Dictionary<int, int>();
        await Sse.StartAsync(context);
        await StreamDeltasAsync(context, session, (index, d) =>
        {
            int offset = offsets.GetValueOrDefault(index);
            offsets[index] = offset + d.Content.Length;
            var choice = new CompletionChoice(index, d.Content,
                plan.Logprobs && d.Tokens.Count > 0 ? logprobs.Completion(d.Tokens, offset) : null,
                d.FinishReason,
                d.Tokens.Count > 0 ? DepthsOf(d.Tokens) : null);
            return new CompletionResponse(id, created, plan.Model, [choice], null);
        }, () => new CompletionResponse(id, created, plan.Model, [], UsageOf(session)));
    }

    /// <summary>
    /// One event per delta, then the usage event when asked for, then <c>[DONE]</c>; a server stop
    /// mid-stream is told as an error event (the status line has gone already).
    /// </summary>
    private static async Task StreamDeltasAsync<TChunk>(HttpContext context, GenerationSession session, Func<int, OutputDelta, TChunk> chunkOf, Func<TChunk> usageChunk)
    {
        var ct = context.RequestAborted;
        try
        {
            await foreach (var (index, d) in session.ReadAllAsync(ct))
            {
                await Sse.WriteAsync(context, chunkOf(index, d), ct);
            }
        }
        catch (EngineStoppingException e)
        {
            await Sse.WriteErrorAsync(context, ApiException.Unavailable(e.Message, "server_shutting_down", 5), ct);
            await Sse.DoneAsync(context, ct);
            return;
        }

        if (session.Plan.IncludeUsage)
        {
            await Sse.WriteAsync(context, usageChunk(), ct);
        }

        await Sse.DoneAsync(context, ct);
    }

    /// <summary>Every choice's whole output, by choice index.</summary>
    private static async Task<SortedDictionary<int, ChoiceAccumulator>> CollectAsync(GenerationSession session, CancellationToken ct)
    {
        var outputs = new SortedDictionary<int, ChoiceAccumulator>(session.Plan.Choices.ToDictionary(c => c.Index, _ => new ChoiceAccumulator()));
        await foreach (var (index, d) in session.ReadAllAsync(ct))
        {
            outputs[index].Add(d);
        }

        return outputs;
    }

    private async Task WriteCompletionResponseAsync(HttpContext context, GenerationSession session, string id, long created)
    {
        var plan = session.Plan;
        var outputs = await CollectAsync(session, context.RequestAborted);
        var logprobs = new LogprobFormatter(host.Tokenizer);
        var choices = outputs.Select(p =>
        {
            var o = p.Value;
            int echoLength = plan.Choices.First(c => c.Index == p.Key).Echo?.Length ?? 0;
            return new CompletionChoice(p.Key, o.Content.ToString(), plan.Logprobs ? logprobs.Completion(o.Tokens, echoLength) : null,
                o.Finish ?? "stop", DepthsOf(o.Tokens));
        }).ToList();
        await WriteJsonAsync(context, new CompletionResponse(id, created, plan.Model, choices, UsageOf(session)));
    }

    private static Task WriteJsonAsync<T>(HttpContext context, T value)
    {
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(ApiJson.Serialize(value), context.RequestAborted);
    }

    private static string? NullIfEmpty(string s) => s.Length == 0 ? null : s;

    private static TaHTokens DepthsOf(IEnumerable<TaH.Engine.Generation.TokenEvent> tokens) => new([.. tokens.Select(t => t.Depth)]);

    private sealed class ChoiceAccumulator
    {
        public StringBuilder Content { get; } = new();

        public StringBuilder Reasoning { get; } = new();

        public List<ParsedToolCall> Calls { get; } = [];

        public List<TaH.Engine.Generation.TokenEvent> Tokens { get; } = [];

        public string? Finish { get; private set; }

        public void Add(OutputDelta d)
        {
            Content.Append(d.Content);
            Reasoning.Append(d.Reasoning);
            Calls.AddRange(d.ToolCalls);
            Tokens.AddRange(d.Tokens);
            Finish = d.FinishReason ?? Finish;
        }
    }
}

/// <summary>Server-sent events as OpenAI frames them: "data: JSON", a blank line, and "data: [DONE]" last.</summary>
internal static class Sse
{
    public static async Task StartAsync(HttpContext context)
    {
        context.Response.ContentType = "text/event-stream; charset=utf-8";
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await context.Response.StartAsync(context.RequestAborted);
    }

    public static Task WriteAsync<T>(HttpContext context, T value, CancellationToken ct) => WriteRawAsync(context, ApiJson.Serialize(value), ct);

    public static Task WriteErrorAsync(HttpContext context, ApiException error, CancellationToken ct) => WriteRawAsync(context, ApiJson.Serialize(error.ToResponse()), ct);

    public static Task DoneAsync(HttpContext context, CancellationToken ct) => WriteRawAsync(context, "[DONE]", ct);

    private static async Task WriteRawAsync(HttpContext context, string data, CancellationToken ct)
    {
        await context.Response.WriteAsync("data: " + data + "\n\n", ct);
        await context.Response.Body.FlushAsync(ct);
    }
}
