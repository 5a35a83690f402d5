using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using System.Text.RegularExpressions;

namespace TaH.Server.Tests;

/// <summary>The real <c>tah</c> executable, started as a user would, stopped with SIGTERM.</summary>
[Collection(ServerCollection.Name)]
public sealed partial class ServeProcessTests
{
    [Fact]
    public async Task TheDefaultVerbServesAndSigtermStopsItCleanly()
    {
        using var tah = TahProcess.Start("--model", TestModel.Directory, "--port", "0", "--shutdown-grace", "2", "--kv-blocks", "64");
        var url = await tah.WaitForLineAsync(ListeningOn(), TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = new Uri(url.Groups[1].Value) };
        for (int i = 0; i < 300 && !(await http.GetAsync("/ready")).IsSuccessStatusCode; i++)
        {
            await Task.Delay(100);
        }

        using var response = await http.PostAsJsonAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 3 });
        Assert.Equal(200, (int)response.StatusCode);

        // SIGTERM, as a container runtime or systemd sends it (bash's kill: no procps needed).
        using (var kill = Process.Start("bash", ["-c", $"kill -TERM {tah.Process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)}"]))
        {
            await kill.WaitForExitAsync();
        }

        Assert.True(tah.Process.WaitForExit(TimeSpan.FromSeconds(30)), "tah did not stop on SIGTERM");
        Assert.Equal(0, tah.Process.ExitCode);
        await tah.Drained;
        var output = tah.Output;
        Assert.Contains("Draining", output, StringComparison.Ordinal);
        Assert.Contains("chat.completions", output, StringComparison.Ordinal); // the request's log line
    }

    [Fact]
    public async Task AnUnknownWeightFormatIsOneLineAndExitCode2()
    {
        using var tah = TahProcess.Start("serve", "--model", TestModel.Directory, "--port", "0", "--weights", "int4");
        Assert.True(tah.Process.WaitForExit(TimeSpan.FromSeconds(60)));
        Assert.Equal(2, tah.Process.ExitCode);
        await tah.Drained;
        Assert.Equal("error: --weights must be fp32, bf16 or q8_0 (got 'int4')", tah.Error.Trim());
    }

    [Fact]
    public async Task AMissingModelDirectoryIsOneLineAndExitCode2()
    {
        using var tah = TahProcess.Start("serve", "--model", "/nonexistent/model", "--port", "0");
        Assert.True(tah.Process.WaitForExit(TimeSpan.FromSeconds(60)));
        Assert.Equal(2, tah.Process.ExitCode);
        await tah.Drained;
        Assert.Equal("error: --model /nonexistent/model: directory not found", tah.Error.Trim());
    }

    [Fact]
    public async Task AModelThatCannotLoadStopsTheServerWithExitCode2()
    {
        // The tiny reference fixture has weights but no tokenizer.json.
        using var tah = TahProcess.Start("--model", Repo.Path("tests", "fixtures", "tah-tiny", "a"), "--port", "0");
        Assert.True(tah.Process.WaitForExit(TimeSpan.FromSeconds(60)));
        Assert.Equal(2, tah.Process.ExitCode);
        await tah.Drained;
        Assert.Contains("Could not load the model", tah.Output, StringComparison.Ordinal);
        Assert.Contains("tokenizer.json", tah.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", tah.Output, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"Now listening on: (http://[^\s]+)")]
    private static partial Regex ListeningOn();

    private sealed class TahProcess : IDisposable
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

        public static TahProcess Start(params string[] args)
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tah.dll"));
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
}
