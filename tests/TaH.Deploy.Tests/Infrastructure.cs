using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace TaH.Deploy.Tests;

/// <summary>Paths in the repository.</summary>
internal static class Repo
{
    public static string Root { get; } = FindRoot();

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    public static string Read(params string[] parts) => File.ReadAllText(Path(parts));

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

/// <summary>What a finished command printed.</summary>
internal sealed record CommandResult(int ExitCode, string Output, string Error)
{
    public string All => Output + Error;
}

/// <summary>Runs real tools (docker-compose, promtool, dotnet msbuild, sh) as a user would.</summary>
internal static class Tool
{
    /// <summary>The absolute path of a program on PATH (or in /usr/sbin, /sbin), or null.</summary>
    public static string? Find(string name)
    {
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Concat(["/usr/sbin", "/sbin"]);
        return dirs.Select(d => System.IO.Path.Combine(d, name)).FirstOrDefault(File.Exists);
    }

    /// <summary>The program's path; fails the test with how to get it when it is missing (never a silent pass).</summary>
    public static string Require(string name, string package) =>
        Find(name) ?? throw new InvalidOperationException(
            $"'{name}' is not installed: scripts/test.sh installs Debian's '{package}' package (apt-get install {package}).");

    public static async Task<CommandResult> RunAsync(string file, IEnumerable<string> args, IDictionary<string, string?>? env = null, string? workingDirectory = null, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Repo.Root,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in env ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                start.Environment.Remove(key);
            }
            else
            {
                start.Environment[key] = value;
            }
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', start.ArgumentList)} did not finish in time");
        }

        return new CommandResult(process.ExitCode, await output, await error);
    }

    /// <summary>A port on the loopback interface that nothing listens on now.</summary>
    public static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>A long-running child process whose output is kept for failure messages.</summary>
internal sealed class ChildProcess : IAsyncDisposable
{
    private readonly StringBuilder _log = new();
    private readonly Task _pumps;

    private ChildProcess(Process process)
    {
        Process = process;
        _pumps = Task.WhenAll(Pump(process.StandardOutput), Pump(process.StandardError));
    }

    public Process Process { get; }

    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    public static ChildProcess Start(string file, IEnumerable<string> args, IDictionary<string, string?> env)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Repo.Root };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in env)
        {
            if (value is null)
            {
                start.Environment.Remove(key);
            }
            else
            {
                start.Environment[key] = value;
            }
        }

        return new ChildProcess(Process.Start(start)!);
    }

    private async Task Pump(StreamReader reader)
    {
        while (await reader.ReadLineAsync() is { } line)
        {
            lock (_log)
            {
                _log.AppendLine(line);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!Process.HasExited)
        {
            // SIGTERM first (both servers drain and exit), by this process's own id.
            using (var kill = Process.Start("bash", ["-c", $"kill -TERM {Process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)}"]))
            {
                await kill.WaitForExitAsync();
            }

            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            try
            {
                await Process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                Process.Kill(entireProcessTree: true);
            }
        }

        await _pumps;
        Process.Dispose();
    }
}
