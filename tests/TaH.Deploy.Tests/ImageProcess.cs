using System.Globalization;
using System.Text.RegularExpressions;

namespace TaH.Deploy.Tests;

/// <summary>
/// The CPU image's command without the container: the Dockerfile's final stage ENTRYPOINT + CMD
/// and ENV, run here with /app mapped to the built tah and /models to a directory of the test's.
/// Only the listening address is changed: loopback and a free port instead of 0.0.0.0:8000.
/// </summary>
internal sealed partial class ImageProcess : IAsyncDisposable
{
    private readonly ChildProcess _process;

    private ImageProcess(ChildProcess process, int port, IReadOnlyDictionary<string, string?> environment)
    {
        _process = process;
        Port = port;
        Environment = environment;
        BaseAddress = new Uri($"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}");
        Http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromMinutes(3) };
    }

    public int Port { get; }

    public Uri BaseAddress { get; }

    public HttpClient Http { get; }

    /// <summary>The environment it runs with: the image's ENV, the port replaced.</summary>
    public IReadOnlyDictionary<string, string?> Environment { get; }

    public string Log => _process.Log;

    public static string AppDirectory => AppContext.BaseDirectory;

    /// <summary>The image's environment for a server on <paramref name="port"/> (listening on loopback).</summary>
    public static Dictionary<string, string?> ImageEnvironment(Dockerfile image, int port)
    {
        var env = image.Final.Environment().ToDictionary(kv => kv.Key, kv => (string?)kv.Value);
        Assert.True(env.ContainsKey(PortVariable), $"the image sets no {PortVariable}");
        Assert.True(env.ContainsKey(HostVariable), $"the image sets no {HostVariable}");
        env[PortVariable] = port.ToString(CultureInfo.InvariantCulture);
        env[HostVariable] = "127.0.0.1"; // tests listen on loopback only
        env["TAH_API_KEY"] = null;
        return env;
    }

    public const string PortVariable = "TAH_Server__Port";

    public const string HostVariable = "TAH_Server__Host";

    /// <summary>The image's ENTRYPOINT + CMD (+ <paramref name="extraArgs"/>), paths mapped to this machine.</summary>
    public static (string File, List<string> Args) Command(Dockerfile image, string modelsRoot, IEnumerable<string> extraArgs)
    {
        var entrypoint = image.Final.Last("ENTRYPOINT")!.ExecForm();
        var cmd = image.Final.Last("CMD")?.ExecForm() ?? [];
        var words = entrypoint.Concat(cmd).Select(w => Map(w, modelsRoot)).ToList();
        return (words[0] == "dotnet" ? "dotnet" : words[0], [.. words.Skip(1), .. extraArgs]);
    }

    private static string Map(string word, string modelsRoot) =>
        word.StartsWith("/app/", StringComparison.Ordinal) ? Path.Combine(AppDirectory, word["/app/".Length..])
        : word.StartsWith("/models/", StringComparison.Ordinal) ? Path.Combine(modelsRoot, word["/models/".Length..])
        : word;

    public static async Task<ImageProcess> StartAsync(string modelsRoot, params string[] extraArgs)
    {
        var image = Dockerfile.Load(Repo.Path("Dockerfile"));
        int port = Tool.FreeLoopbackPort();
        var env = ImageEnvironment(image, port);
        var (file, args) = Command(image, modelsRoot, extraArgs);
        var process = new ImageProcess(ChildProcess.Start(file, args, env), port, env);
        for (int i = 0; i < 1200; i++)
        {
            Assert.False(process._process.Process.HasExited, "tah exited: " + process.Log);
            try
            {
                using var ready = await process.Http.GetAsync("/ready");
                if (ready.IsSuccessStatusCode)
                {
                    return process;
                }
            }
            catch (HttpRequestException)
            {
            }

            await Task.Delay(100);
        }

        await process.DisposeAsync();
        throw new TimeoutException("tah did not become ready: " + process.Log);
    }

    /// <summary>A random-weight TaH checkpoint with the real Qwen3 tokenizer, written by `tah create-random` at <paramref name="dir"/>.</summary>
    public static async Task CreateModelAsync(string dir)
    {
        var result = await Tool.RunAsync("dotnet",
            [Path.Combine(AppDirectory, "tah.dll"), "create-random", "--shape", "tiny-qwen3-vocab", "--out", dir, "--tokenizer", Repo.Path("tests", "fixtures", "qwen3-tokenizer")]);
        Assert.True(result.ExitCode == 0, "create-random failed: " + result.All);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _process.DisposeAsync();
    }
}
