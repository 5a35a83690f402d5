using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using TaH.Engine.TaH;
using TaH.Server.Hosting;

namespace TaH.Server.Api;

/// <summary>The routes: OpenAI's, the probes, and the playground page.</summary>
public static class Endpoints
{
    public static void Map(WebApplication app)
    {
        var v1 = app.MapGroup("/v1").WithTags("OpenAI");
        v1.MapPost("/chat/completions", (HttpContext context, CompletionEndpoints endpoints) => endpoints.ChatAsync(context))
            .WithName("CreateChatCompletion")
            .WithSummary("Chat completion, streamed (server-sent events) or not; choices and chunks carry per-token depths in \"tah\".")
            .WithMetadata(new JsonBodyMetadata(typeof(ChatCompletionRequest)))
            .Produces<ChatCompletionResponse>(200)
            .Produces<ChatCompletionChunk>(200, "text/event-stream")
            .ProducesErrors();
        v1.MapPost("/completions", (HttpContext context, CompletionEndpoints endpoints) => endpoints.CompletionAsync(context))
            .WithName("CreateCompletion")
            .WithSummary("Text completion, streamed or not.")
            .WithMetadata(new JsonBodyMetadata(typeof(CompletionRequest)))
            .Produces<CompletionResponse>(200)
            .Produces<CompletionResponse>(200, "text/event-stream")
            .ProducesErrors();
        v1.MapGet("/models", (ModelHost host) => Results.Json(new ModelList([Card(host)]), ApiJson.Options))
            .WithName("ListModels")
            .Produces<ModelList>(200);
        v1.MapGet("/models/{id}", (string id, ModelHost host) =>
            {
                host.RequireModel(id);
                return Results.Json(Card(host), ApiJson.Options);
            })
            .WithName("RetrieveModel")
            .Produces<ModelCard>(200)
            .Produces<ErrorResponse>(404);
        v1.MapFallback(context => throw new ApiException(404, $"There is no endpoint {context.Request.Method} {context.Request.Path}.", "invalid_request_error", null, "not_found"))
            .ExcludeFromDescription();

        app.MapPost("/tokenize", (HttpContext context, UtilityEndpoints endpoints) => endpoints.TokenizeAsync(context))
            .WithTags("vLLM").WithName("Tokenize")
            .WithSummary("Token ids of a prompt, or of chat messages as the chat template renders them.")
            .WithMetadata(new JsonBodyMetadata(typeof(TokenizeRequest)))
            .Produces<TokenizeResponse>(200).ProducesErrors();
        app.MapPost("/detokenize", (HttpContext context, UtilityEndpoints endpoints) => endpoints.DetokenizeAsync(context))
            .WithTags("vLLM").WithName("Detokenize")
            .WithSummary("The text of token ids.")
            .WithMetadata(new JsonBodyMetadata(typeof(DetokenizeRequest)))
            .Produces<DetokenizeResponse>(200).ProducesErrors();
        app.MapGet("/version", () => Results.Json(UtilityEndpoints.Version, ApiJson.Options))
            .WithTags("vLLM").WithName("Version").Produces<VersionInfo>(200);

        app.MapGet("/health", (ModelHost host) => Results.Json(new HealthStatus("ok", host.ServedModelName), ApiJson.Options))
            .WithTags("Probes").WithSummary("Liveness: the process answers.").Produces<HealthStatus>(200);
        app.MapGet("/ready", (ModelHost host) => host.State == ModelState.Ready
                ? Results.Json(new HealthStatus("ready", host.ServedModelName), ApiJson.Options)
                : Results.Json(new HealthStatus(host.State.ToString().ToLowerInvariant(), host.ServedModelName), ApiJson.Options, statusCode: 503))
            .WithTags("Probes").WithSummary("Readiness: the model is loaded and the server is not draining.")
            .Produces<HealthStatus>(200).Produces<HealthStatus>(503);
        app.MapGet("/", () => Results.Content(Playground.Value, "text/html; charset=utf-8")).ExcludeFromDescription();
    }

    private static RouteHandlerBuilder ProducesErrors(this RouteHandlerBuilder builder) =>
        builder.Produces<ErrorResponse>(400).Produces<ErrorResponse>(401).Produces<ErrorResponse>(404).Produces<ErrorResponse>(413)
            .Produces<ErrorResponse>(415).Produces<ErrorResponse>(429).Produces<ErrorResponse>(503);

    private static ModelCard Card(ModelHost host)
    {
        host.RequireReady();
        var model = host.Model;
        return new ModelCard(host.ServedModelName, host.Created.ToUnixTimeSeconds(), "tah", model.Directory, model.MaxModelLength,
            new TaHModelInfo(model.MaxDepth, model.HasDecider, model.DeciderThreshold, [.. model.Policies.Select(p => new IterationPolicy(p).ToString())], host.DefaultPolicy.ToString(), model.VocabSize));
    }

    private static readonly Lazy<string> Playground = new(() =>
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("TaH.Server.Playground.index.html")
            ?? throw new InvalidOperationException("the playground page is not embedded");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });
}
