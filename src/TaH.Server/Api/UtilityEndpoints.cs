using System.Reflection;
using Microsoft.AspNetCore.Http;
using TaH.Server.Api.Planning;
using TaH.Server.Api.Reading;
using TaH.Server.Hosting;

namespace TaH.Server.Api;

/// <summary>vLLM's utility routes: POST /tokenize and /detokenize, GET /version.</summary>
public sealed class UtilityEndpoints(ModelHost host)
{
    public static VersionInfo Version { get; } = new(
        typeof(UtilityEndpoints).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(UtilityEndpoints).Assembly.GetName().Version?.ToString()
        ?? "unknown");

    public async Task<IResult> TokenizeAsync(HttpContext context)
    {
        var r = await RequestBody.ReadAsync<TokenizeRequest>(context);
        host.RequireReady();
        host.RequireModel(r.Model);
        var tokenizer = host.Tokenizer;
        IReadOnlyList<int> tokens;
        if (r.Messages is not null)
        {
            if (r.Prompt is not null)
            {
                throw ApiException.BadRequest("Send 'prompt' or 'messages', not both.", "prompt");
            }

            var messages = MessageReader.Read(r.Messages);
            var rendering = ChatRendering.Read(r.ChatTemplateKwargs, r.ContinueFinalMessage, r.AddGenerationPrompt);
            tokens = tokenizer.Encode(ChatPrompt.Render(tokenizer, messages, ToolReader.Read(r.Tools, toolChoice: null, parallelToolCalls: null), rendering));
        }
        else
        {
            tokens = tokenizer.Encode(r.Prompt ?? throw ApiException.BadRequest("'prompt' (a string) or 'messages' is required.", "prompt"));
        }

        var strings = r.ReturnTokenStrs == true ? tokens.Select(t => tokenizer.IdToToken(t) ?? string.Empty).ToList() : null;
        return Results.Json(new TokenizeResponse(tokens.Count, host.Model.MaxModelLength, tokens, strings), ApiJson.Options);
    }

    public async Task<IResult> DetokenizeAsync(HttpContext context)
    {
        var r = await RequestBody.ReadAsync<DetokenizeRequest>(context);
        host.RequireReady();
        host.RequireModel(r.Model);
        var tokens = r.Tokens ?? throw ApiException.BadRequest("'tokens' (a list of token ids) is required.", "tokens");
        int vocab = host.Model.VocabSize;
        foreach (int id in tokens)
        {
            if (id < 0 || id >= vocab)
            {
                throw ApiException.BadRequest($"'tokens' has {id}, outside the vocabulary (0..{vocab - 1}).", "tokens");
            }
        }

        return Results.Json(new DetokenizeResponse(host.Tokenizer.Decode(tokens)), ApiJson.Options);
    }
}
