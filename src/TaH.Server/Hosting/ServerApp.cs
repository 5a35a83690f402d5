using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;
using TaH.Engine.Serving;
using TaH.Server.Api;
using TaH.Server.Api.Planning;

using TaH.Training;

namespace TaH.Server.Hosting;

/// <summary>Builds the web application: options, logging, telemetry, middleware and endpoints.</summary>
public static class ServerApp
{
    /// <summary>
    /// Builds the server. <paramref name="overrides"/> are configuration keys ("Server:Model", ...)
    /// that win over appsettings.json and the environment (the command line's flags);
    /// <paramref name="configureLogging"/> adds to the Serilog configuration (tests add a sink).
    /// </summary>
    public static WebApplication Build(IReadOnlyDictionary<string, string?> overrides, Action<LoggerConfiguration>? configureLogging = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.AddEnvironmentVariables("TAH_");
        builder.Configuration.AddInMemoryCollection(overrides);
        var section = builder.Configuration.GetSection(ServerOptions.Section);
        var options = section.Get<ServerOptions>() ?? new ServerOptions();
        if (Environment.GetEnvironmentVariable("TAH_API_KEY") is { Length: > 0 } envKey)
        {
            options.ApiKeys.Add(envKey);
        }

        Validate(options);
        builder.Services.AddSingleton(Options.Create(options));
        builder.Services.AddSingleton(options);

        builder.WebHost.UseUrls($"http://{(options.Host.Contains(':') ? $"[{options.Host}]" : options.Host)}:{options.Port}");
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = options.MaxBodyBytes);
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = options.ShutdownGrace + TimeSpan.FromSeconds(10));

        // One logger for the app, built here: the request log is handed it explicitly, since
        // UseSerilogRequestLogging otherwise writes to the static Log.Logger, which this server
        // leaves alone (so tests can run several servers) and which drops everything.
        var log = new LoggerConfiguration()
            .MinimumLevel.Information()
            .MinimumLevel.Override("Microsoft.AspNetCore", LogEventLevel.Warning)
            .MinimumLevel.Override("Microsoft.Hosting.Lifetime", LogEventLevel.Information)
            .Enrich.FromLogContext();
        if (options.LogFormat == "json")
        {
            log.WriteTo.Console(new RenderedCompactJsonFormatter());
        }
        else
        {
            log.WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss} {Level:u3}] {Message:lj}{NewLine}{Exception}");
        }

        configureLogging?.Invoke(log);
        var logger = log.CreateLogger();
        builder.Services.AddSerilog(logger, dispose: true);

        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("tah-server"))
            .WithMetrics(m =>
            {
                m.AddMeter(TaHMetrics.MeterName)
                    .AddAspNetCoreInstrumentation()
                    .AddRuntimeInstrumentation()
                    .AddPrometheusExporter(p => p.ScrapeResponseCacheDurationMilliseconds = 0);
                if (options.OtlpEndpoint is { Length: > 0 } endpoint)
                {
                    m.AddOtlpExporter(o => o.Endpoint = new Uri(endpoint));
                }
            });
        if (options.OtlpEndpoint is { Length: > 0 } traceEndpoint)
        {
            otel.WithTracing(t => t
                .AddSource(Telemetry.SourceName)
                .AddAspNetCoreInstrumentation()
                .AddOtlpExporter(o => o.Endpoint = new Uri(traceEndpoint)));
        }

        builder.Services.ConfigureHttpJsonOptions(j => ApiJson.Configure(j.SerializerOptions));
        builder.Services.AddEndpointsApiExplorer();
        builder.Services.AddSwaggerGen(s =>
        {
            s.SwaggerDoc("v1", new OpenApiInfo
            {
                Title = "TaH server",
                Version = "v1",
                Description = "OpenAI-compatible API for Think-at-Hard models, with per-token depths (the \"tah\" objects).",
            });
            s.SupportNonNullableReferenceTypes();
            s.OperationFilter<RequestBodyFilter>();
        });

        builder.Services.AddSingleton<ModelHost>();
        builder.Services.AddSingleton<RequestPlanner>();
        builder.Services.AddSingleton<CompletionEndpoints>();
        builder.Services.AddSingleton<UtilityEndpoints>();
        builder.Services.AddHostedService<EngineService>();

        var app = builder.Build();

        // Outermost, so it sees the status every answer ends with (a 401, 415 or 429 included).
        // It logs the method, path and status only: never a header, so never a key.
        app.UseSerilogRequestLogging(r =>
        {
            r.Logger = logger;
            r.MessageTemplate = "HTTP {RequestMethod} {RequestPath} responded {StatusCode} in {Elapsed:0.0} ms";
            r.GetLevel = (context, _, error) => error is not null || context.Response.StatusCode >= 500 ? LogEventLevel.Error
                : context.Request.Path.StartsWithSegments("/metrics") || context.Request.Path.StartsWithSegments("/health") || context.Request.Path.StartsWithSegments("/ready") ? LogEventLevel.Debug
                : LogEventLevel.Information;
        });
        app.UseMiddleware<ErrorHandlingMiddleware>();
        app.UseMiddleware<AllowedHostsMiddleware>(options.EffectiveAllowedHosts);
        app.UseMiddleware<ApiKeyMiddleware>((IReadOnlyList<string>)options.ApiKeys);
        app.UseSwagger(s => s.RouteTemplate = "openapi/{documentName}.json");
        app.UseSwaggerUI(s =>
        {
            s.RoutePrefix = "docs";
            s.SwaggerEndpoint("/openapi/v1.json", "TaH server v1");
            s.DocumentTitle = "TaH server API";
        });
        app.MapPrometheusScrapingEndpoint("/metrics");
        Endpoints.Map(app);
        return app;
    }

    private static void Validate(ServerOptions o)
    {
        if (string.IsNullOrWhiteSpace(o.Model))
        {
            // Without --model the bundled demo model is served, so a fresh clone runs at once.
            o.Model = DemoModel.DefaultDirectory
                ?? throw new ArgumentException($"--model is required: no checkpoint directory given, and the bundled demo model (models/{DemoModel.FolderName}) is not installed");
        }

        if (!Directory.Exists(o.Model))
        {
            throw new ArgumentException($"--model {o.Model}: directory not found");
        }

        if (o.Port is < 0 or > 65535)
        {
            throw new ArgumentException($"--port {o.Port} is not a port number");
        }

        if (o.MaxBodyBytes < 1024)
        {
            throw new ArgumentException($"--max-body-bytes {o.MaxBodyBytes} is too small (at least 1024)");
        }

        if (o.ShutdownGraceSeconds < 0 || o.KvBlocks < 2 || o.BlockSize < 1 || o.MaxWaiting < 1 || o.MaxRunning < 1 || o.DefaultMaxTokens < 1 || o.MaxN < 1)
        {
            throw new ArgumentException("--shutdown-grace must be >= 0; --kv-blocks >= 2; --block-size, --max-waiting, --max-running, --default-max-tokens and --max-n >= 1");
        }

        if (o.LogFormat is not ("text" or "json"))
        {
            throw new ArgumentException($"--log-format {o.LogFormat}: expected text or json");
        }

        if (o.ReasoningParser is not ("qwen3" or "none"))
        {
            throw new ArgumentException($"--reasoning-parser {o.ReasoningParser}: expected qwen3 or none");
        }

        if (o.OtlpEndpoint is { Length: > 0 } e && !Uri.TryCreate(e, UriKind.Absolute, out _))
        {
            throw new ArgumentException($"--otlp-endpoint {e} is not an absolute URI");
        }

        _ = TaH.Engine.TaH.IterationPolicy.Parse(o.Policy, o.Threshold);
        if (!(o.ElasticIntervalSeconds >= 0 && o.ElasticIntervalSeconds <= 3600))
        {
            throw new ArgumentException($"--elastic-interval {o.ElasticIntervalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)} must be in [0, 3600] seconds");
        }

        new TaH.Engine.TaH.ElasticDepthOptions { Enabled = o.ElasticDepth, MinShare = o.ElasticMinShare, Interval = TimeSpan.FromSeconds(o.ElasticIntervalSeconds) }.Validate();

        if (o.Weights is { } weights)
        {
            _ = TaH.Engine.Model.WeightFormats.Parse(weights);
        }

        if (o.DeciderWeights is { } deciderWeights)
        {
            _ = TaH.Engine.Model.WeightFormats.Parse(deciderWeights, "--decider-weights");
        }
        if (o.ChatTemplate is { } family)
        {
            _ = TaH.Engine.Tokenization.ChatTemplate.ForFamily(family);
        }
    }
}
