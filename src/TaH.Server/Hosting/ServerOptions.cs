namespace TaH.Server.Hosting;

/// <summary>
/// The server's settings, bound from the configuration section "Server" (appsettings.json,
/// environment variables TAH_Server__Model and so on, and the <c>tah serve</c> flags, which
/// override both).
/// </summary>
public sealed class ServerOptions
{
    public const string Section = "Server";

    /// <summary>Checkpoint directory (required).</summary>
    public string? Model { get; set; }

    /// <summary>The model name clients send; defaults to the directory's name.</summary>
    public string? ServedModelName { get; set; }

    public string Host { get; set; } = "127.0.0.1";

    public int Port { get; set; } = 8000;

    /// <summary>Accepted bearer keys; none means no authentication. The environment variable TAH_API_KEY adds one.</summary>
    public List<string> ApiKeys { get; set; } = [];

    /// <summary>
    /// Host header values this server answers (ASP.NET's AllowedHosts patterns: "example.com",
    /// "*.example.com", "*"), so that a page whose name was rebound to this address cannot talk to
    /// it. None set: the loopback names when listening on loopback, any host otherwise.
    /// </summary>
    public List<string> AllowedHosts { get; set; } = [];

    /// <summary>The allowed hosts in force.</summary>
    public IReadOnlyList<string> EffectiveAllowedHosts =>
        AllowedHosts.Count > 0 ? [.. AllowedHosts.SelectMany(h => h.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))]
        : System.Net.IPAddress.TryParse(Host, out var address) ? (System.Net.IPAddress.IsLoopback(address) ? LoopbackHosts : ["*"])
        : Host.Equals("localhost", StringComparison.OrdinalIgnoreCase) ? LoopbackHosts : ["*"];

    private static IReadOnlyList<string> LoopbackHosts { get; } = ["localhost", "127.0.0.1", "[::1]"];

    /// <summary>Largest request body, in bytes (413 beyond).</summary>
    public long MaxBodyBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>How long in-flight requests may run on after a stop signal before they are told and ended.</summary>
    public double ShutdownGraceSeconds { get; set; } = 30;

    /// <summary>Requests queued for admission before new ones get 429.</summary>
    public int MaxWaiting { get; set; } = 256;

    /// <summary>Sequences decoded together at most.</summary>
    public int MaxRunning { get; set; } = 64;

    /// <summary>KV blocks in the pool (shared by all depths and sequences).</summary>
    public int KvBlocks { get; set; } = 1024;

    /// <summary>Entries per KV block.</summary>
    public int BlockSize { get; set; } = 16;

    /// <summary>The longest sequence (prompt + output); defaults to the model's max_position_embeddings.</summary>
    public int? MaxModelLen { get; set; }

    /// <summary>max_tokens of a chat request that sets none (clamped to the context and the pool).</summary>
    public int DefaultMaxTokens { get; set; } = 1024;

    /// <summary>Most choices one request may ask for.</summary>
    public int MaxN { get; set; } = 16;

    /// <summary>The iteration policy of requests that name none: decider, never or always.</summary>
    public string Policy { get; set; } = "decider";

    /// <summary>Threshold override of the decider for requests that name none.</summary>
    public double? Threshold { get; set; }

    /// <summary>
    /// Thinking that yields under load: while requests wait or the KV pool is nearly full, raise
    /// the decider threshold of requests that set neither threshold nor target_share.
    /// </summary>
    public bool ElasticDepth { get; set; }

    /// <summary>The lowest depth-2 share elastic depth lowers those requests to.</summary>
    public double ElasticMinShare { get; set; } = 0.01;

    /// <summary>Seconds pressure (or calm) must last before elastic depth steps down (or returns).</summary>
    public double ElasticIntervalSeconds { get; set; } = 0.5;

    /// <summary>cpu (fp32) or cuda[:N] (bf16 and the CUDA kernels).</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>How the CPU holds the linear layers' weights: fp32 (default), bf16, q8_0 or q4_0.</summary>
    public string? Weights { get; set; }

    /// <summary>The decider MLP's format (default: the model's).</summary>
    public string? DeciderWeights { get; set; }

    /// <summary>Chat template family to use instead of the one recognised in tokenizer_config.json (qwen3, chatml).</summary>
    public string? ChatTemplate { get; set; }

    /// <summary>qwen3 (split &lt;think&gt; into reasoning_content) or none.</summary>
    public string ReasoningParser { get; set; } = "qwen3";

    /// <summary>Console log format: text or json (compact JSON, one event per line).</summary>
    public string LogFormat { get; set; } = "text";

    /// <summary>OTLP endpoint for traces (and metrics), e.g. http://localhost:4317; none exports nothing.</summary>
    public string? OtlpEndpoint { get; set; }

    public TimeSpan ShutdownGrace => TimeSpan.FromSeconds(ShutdownGraceSeconds);
}
