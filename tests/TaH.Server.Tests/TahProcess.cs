using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace TaH.Server.Tests;

/// <summary>The real <c>tah</c> executable in a child process, its output collected.</summary>
internal sealed partial class TahProcess : IDisposable
{
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _error = new();
    private readonly Task _stdout;
    private readonly Task _stderr;

    private TahProcess(Process process)
    {
        Process = process;
        _stdout = Pump(process.StandardOutput, _output);
        _stderr = Pump(process.StandardError, _error);
    }

    public Process Process { get; }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public string Error
    {
        get
        {
            lock (_error)
            {
                return _error.ToString();
            }
        }
    }

    public Task Drained => Task.WhenAll(_stdout, _stderr);

    public static TahProcess Start(params string[] args) => StartBuild(Path.Combine(AppContext.BaseDirectory, "tah.dll"), args);

    /// <summary>A given build of tah.dll (another version, for a before/after measurement).</summary>
    public static TahProcess StartBuild(string tahDll, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(tahDll);
        start.Environment.Remove("OMP_WAIT_POLICY");
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment.Remove("TAH_API_KEY");
        return new TahProcess(Process.Start(start)!);
    }

    public async Task<Match> WaitForLineAsync(Regex pattern, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            var m = pattern.Match(Output);
            if (m.Success)
            {
                return m;
            }

            Assert.False(Process.HasExited, $"tah exited early: {Output}{Error}");
            await Task.Delay(50);
        }

        throw new TimeoutException($"no line matching {pattern} in: {Output}");
    }

    /// <summary>Waits for "Now listening on", then for /ready; returns the base address.</summary>
    public async Task<Uri> WaitUntilServingAsync(TimeSpan timeout)
    {
        var url = new Uri((await WaitForLineAsync(ListeningOn(), timeout)).Groups[1].Value);
        using var http = new HttpClient { BaseAddress = url };
        for (int i = 0; i < 600 && !(await http.GetAsync("/ready")).IsSuccessStatusCode; i++)
        {
            await Task.Delay(100);
        }

        return url;
    }

    /// <summary>The process's resident set (VmRSS of /proc/PID/status), in bytes.</summary>
    public long ResidentBytes()
    {
        var line = File.ReadLines($"/proc/{Process.Id}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
    }

    [GeneratedRegex(@"Now listening on: (http://[^\s]+)")]
    private static partial Regex ListeningOn();

    private static async Task Pump(StreamReader reader, StringBuilder into)
    {
        while (await reader.ReadLineAsync() is { } line)
        {
            lock (into)
            {
                into.AppendLine(line);
            }
        }
    }

    public void Dispose()
    {
        if (!Process.HasExited)
        {
            Process.Kill(entireProcessTree: true);
        }

        Process.Dispose();
    }
}
