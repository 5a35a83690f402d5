using System.CommandLine;
using System.Globalization;
using Microsoft.AspNetCore.Builder;
using TaH.Server.Hosting;

namespace TaH.Server.Cli;

/// <summary>
/// <c>tah serve</c> (the default verb): the OpenAI-compatible HTTP server. Each flag sets the
/// <see cref="ServerOptions"/> key of the same name, over appsettings.json and TAH_Server__*
/// environment variables.
/// </summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model(required: false);
        var served = new Option<string?>("--served-model-name") { Description = "the model name clients send (default: the directory's name)" };
        var host = new Option<string?>("--host") { Description = "address to listen on (default 127.0.0.1; 0.0.0.0 for all)" };
        var port = new Option<int?>("--port") { Description = "port to listen on (default 8000; 0 picks a free one)" };
        var apiKey = new Option<string[]>("--api-key") { Description = "accepted bearer key (repeatable; the environment variable TAH_API_KEY adds one)", AllowMultipleArgumentsPerToken = false };
        var allowedHosts = new Option<string[]>("--allowed-hosts")
        {
            Description = "Host header values to answer (repeatable or comma separated; '*.example.com', '*' for any). Default: the loopback names on a loopback address, any host otherwise",
            AllowMultipleArgumentsPerToken = false,
        };
        var maxBody = new Option<long?>("--max-body-bytes") { Description = "largest request body (default 4 MiB)" };
        var grace = new Option<double?>("--shutdown-grace") { Description = "seconds in-flight requests may run on after SIGTERM (default 30)" };
        var maxWaiting = new Option<int?>("--max-waiting") { Description = "queued requests before 429 (default 256)" };
        var maxRunning = new Option<int?>("--max-running") { Description = "sequences decoded together (default 64)" };
        var kvBlocks = new Option<int?>("--kv-blocks") { Description = "KV cache blocks in the pool (default 1024)" };
        var blockSize = new Option<int?>("--block-size") { Description = "entries per KV block (default 16)" };
        var maxModelLen = new Option<int?>("--max-model-len") { Description = "longest prompt + output (default: the model's)" };
        var defaultMaxTokens = new Option<int?>("--default-max-tokens") { Description = "max_tokens of chat requests that set none (default 1024)" };
        var maxN = new Option<int?>("--max-n") { Description = "most choices (n) per request (default 16)" };
        var policy = new Option<string?>("--policy") { Description = "default iteration policy: decider, never or always" };
        var threshold = CommonOptions.Threshold();
        var chatTemplate = new Option<string?>("--chat-template") { Description = "render chats as this family (qwen3, chatml) instead of the recognised one" };
        var reasoning = new Option<string?>("--reasoning-parser") { Description = "qwen3 (split <think> into reasoning_content; default) or none" };
        var logFormat = new Option<string?>("--log-format") { Description = "text (default) or json" };
        var otlp = new Option<string?>("--otlp-endpoint") { Description = "export traces and metrics over OTLP to this endpoint (off by default)" };
        var device = new Option<string?>("--device") { Description = "cpu (fp32, default) or cuda[:N] (bf16 and the CUDA kernels)" };
        var elastic = new Option<bool?>("--elastic-depth") { Description = "under load (requests waiting, KV pool nearly full) raise the threshold of requests that set neither threshold nor target_share", Arity = ArgumentArity.ZeroOrOne };
        var elasticMin = new Option<double?>("--elastic-min-share") { Description = "the lowest depth-2 share --elastic-depth lowers them to (default 0.01)" };
        var elasticInterval = new Option<double?>("--elastic-interval") { Description = "seconds load (or calm) must last before --elastic-depth steps down (or returns; default 0.5)" };
        var weights = new WeightOptions();

        var command = new Command("serve", "serve a model over an OpenAI-compatible HTTP API (the default verb)")
        {
            model, served, host, port, apiKey, allowedHosts, maxBody, grace, maxWaiting, maxRunning, kvBlocks, blockSize, maxModelLen,
            defaultMaxTokens, maxN, policy, threshold, chatTemplate, reasoning, logFormat, otlp, device, elastic, elasticMin, elasticInterval,
        };
        weights.AddTo(command);
        command.SetAction(result => CliAction.Run(() =>
        {
            var settings = new Dictionary<string, string?>();
            void Set<T>(string key, Option<T> option)
            {
                if (result.GetResult(option) is not null && result.GetValue(option) is { } value)
                {
                    settings[$"{ServerOptions.Section}:{key}"] = Convert.ToString(value, CultureInfo.InvariantCulture);
                }
            }

            Set(nameof(ServerOptions.Model), model);
            Set(nameof(ServerOptions.ServedModelName), served);
            Set(nameof(ServerOptions.Host), host);
            Set(nameof(ServerOptions.Port), port);
            Set(nameof(ServerOptions.MaxBodyBytes), maxBody);
            Set(nameof(ServerOptions.ShutdownGraceSeconds), grace);
            Set(nameof(ServerOptions.MaxWaiting), maxWaiting);
            Set(nameof(ServerOptions.MaxRunning), maxRunning);
            Set(nameof(ServerOptions.KvBlocks), kvBlocks);
            Set(nameof(ServerOptions.BlockSize), blockSize);
            Set(nameof(ServerOptions.MaxModelLen), maxModelLen);
            Set(nameof(ServerOptions.DefaultMaxTokens), defaultMaxTokens);
            Set(nameof(ServerOptions.MaxN), maxN);
            Set(nameof(ServerOptions.Policy), policy);
            Set(nameof(ServerOptions.Threshold), threshold);
            Set(nameof(ServerOptions.ChatTemplate), chatTemplate);
            Set(nameof(ServerOptions.ReasoningParser), reasoning);
            Set(nameof(ServerOptions.LogFormat), logFormat);
            Set(nameof(ServerOptions.OtlpEndpoint), otlp);
            Set(nameof(ServerOptions.Device), device);
            Set(nameof(ServerOptions.ElasticDepth), elastic);
            Set(nameof(ServerOptions.ElasticMinShare), elasticMin);
            Set(nameof(ServerOptions.ElasticIntervalSeconds), elasticInterval);
            Set(nameof(ServerOptions.Weights), weights.Weights);
            Set(nameof(ServerOptions.DeciderWeights), weights.Decider);
            var keys = result.GetValue(apiKey) ?? [];
            for (int i = 0; i < keys.Length; i++)
            {
                settings[$"{ServerOptions.Section}:{nameof(ServerOptions.ApiKeys)}:{i}"] = keys[i];
            }

            var hosts = result.GetValue(allowedHosts) ?? [];
            for (int i = 0; i < hosts.Length; i++)
            {
                settings[$"{ServerOptions.Section}:{nameof(ServerOptions.AllowedHosts)}:{i}"] = hosts[i];
            }

            var app = ServerApp.Build(settings);
            app.Run();
            return Environment.ExitCode;
        }));
        return command;
    }
}
