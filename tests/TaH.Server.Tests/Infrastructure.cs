using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Serilog.Core;
using Serilog.Events;
using TaH.Checkpoints.Writing;
using TaH.Engine.Model;
using TaH.Server.Hosting;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace TaH.Server.Tests;

/// <summary>Paths in the repository.</summary>
internal static class Repo
{
    public static string Root { get; } = FindRoot();

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "TaH.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("cannot find the repository root (TaH.sln) above " + AppContext.BaseDirectory);
    }
}

/// <summary>
/// A random-weight TaH checkpoint with the Qwen3 vocabulary and the real Qwen3 tokenizer and chat
/// template: random text, real protocol. Written once per test run.
/// </summary>
internal static class TestModel
{
    private static readonly Lazy<string> Dir = new(Create);

    public static string Directory => Dir.Value;

    /// <summary>The served model name (the directory's name).</summary>
    public const string Name = "tah-test-model";

    private static string Create()
    {
        var root = Path.Combine(Path.GetTempPath(), "tah-server-tests-" + Guid.NewGuid().ToString("N")[..8]);
        var dir = Path.Combine(root, Name);
        RandomCheckpoint.Write(dir, ModelShape.TinyQwen3Vocab, seed: 7);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
        {
            File.Copy(Repo.Path("tests", "fixtures", "qwen3-tokenizer", file), Path.Combine(dir, file));
        }

        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                System.IO.Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
            }
        };
        return dir;
    }
}

/// <summary>Log events the server wrote, for tests of its structured logs.</summary>
internal sealed class CollectingSink : ILogEventSink
{
    public ConcurrentQueue<LogEvent> Events { get; } = new();

    public void Emit(LogEvent logEvent) => Events.Enqueue(logEvent);
}

/// <summary>The real server (Kestrel on a free loopback port) over <see cref="TestModel"/>, in this process.</summary>
internal sealed class TestServer : IAsyncDisposable
{
    private TestServer(WebApplication app, CollectingSink logs)
    {
        App = app;
        Logs = logs;
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        BaseAddress = new Uri(addresses.First());
        Http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromMinutes(2) };
    }

    public WebApplication App { get; }

    public CollectingSink Logs { get; }

    public Uri BaseAddress { get; }

    public Uri V1 => new(BaseAddress, "/v1");

    public HttpClient Http { get; }

    public ModelHost Host => App.Services.GetRequiredService<ModelHost>();

    public static async Task<TestServer> StartAsync(Dictionary<string, string?>? settings = null, Func<Task>? beforeLoad = null, bool waitReady = true)
    {
        var overrides = new Dictionary<string, string?>
        {
            ["Server:Model"] = TestModel.Directory,
            ["Server:Port"] = "0",
            ["Server:KvBlocks"] = "1024",
            ["Server:MaxModelLen"] = "2048",
            ["Server:ShutdownGraceSeconds"] = "5",
            ["Server:LogFormat"] = "text",
        };
        foreach (var (key, value) in settings ?? [])
        {
            overrides[key] = value;
        }

        var sink = new CollectingSink();
        var app = ServerApp.Build(overrides, log => log.WriteTo.Sink(sink));
        if (beforeLoad is not null)
        {
            app.Services.GetRequiredService<ModelHost>().BeforeLoad = beforeLoad;
        }

        await app.StartAsync();
        var server = new TestServer(app, sink);
        if (waitReady)
        {
            await server.WaitReadyAsync();
        }

        return server;
    }

    public async Task WaitReadyAsync()
    {
        for (int i = 0; i < 600; i++)
        {
            using var response = await Http.GetAsync("/ready");
            if (response.IsSuccessStatusCode)
            {
                return;
            }

            await Task.Delay(50);
        }

        throw new TimeoutException("the server did not become ready");
    }

    /// <summary>POSTs JSON and returns the status and the parsed body.</summary>
    public async Task<(int Status, JsonNode? Body)> PostAsync(string path, object body)
    {
        using var response = await Http.PostAsync(path, body is string s ? new StringContent(s, System.Text.Encoding.UTF8, "application/json") : JsonContent.Create(body));
        var text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text));
    }

    /// <summary>Waits until the engine runs nothing and every KV block is back in the pool.</summary>
    public async Task AssertEngineIdleAsync()
    {
        var host = Host;
        for (int i = 0; i < 500; i++)
        {
            var s = host.Loop.Snapshot;
            if (s.Running == 0 && s.Waiting == 0 && host.Engine.Cache.FreeBlocks == host.Engine.Cache.TotalBlocks)
            {
                return;
            }

            await Task.Delay(20);
        }

        var last = host.Loop.Snapshot;
        Assert.Fail($"the engine did not free its work: running {last.Running}, waiting {last.Waiting}, free blocks {host.Engine.Cache.FreeBlocks} of {host.Engine.Cache.TotalBlocks}");
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

/// <summary>One server shared by the tests of the "server" collection (they run one after another).</summary>
public sealed class SharedServer : IAsyncLifetime
{
    internal TestServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<SharedServer>
{
    public const string Name = "server";
}
