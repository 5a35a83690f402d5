using System.Diagnostics;
using System.Net.Http.Json;

namespace TaH.Server.Tests;

/// <summary>The real <c>tah</c> executable, started as a user would, stopped with SIGTERM.</summary>
[Collection(ServerCollection.Name)]
public sealed class ServeProcessTests
{
    [Fact]
    public async Task TheDefaultVerbServesAndSigtermStopsItCleanly()
    {
        using var tah = TahProcess.Start("--model", TestModel.Directory, "--port", "0", "--shutdown-grace", "2", "--kv-blocks", "64");
        using var http = new HttpClient { BaseAddress = await tah.WaitUntilServingAsync(TimeSpan.FromSeconds(60)) };

        using var response = await http.PostAsJsonAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 3 });
        Assert.Equal(200, (int)response.StatusCode);
        using var refused = await http.PostAsync("/v1/chat/completions", new StringContent("{}", System.Text.Encoding.UTF8, "text/plain"));
        Assert.Equal(415, (int)refused.StatusCode);

        // Serving never loads the checkpoint writers (mapped assemblies show in /proc/PID/maps).
        var maps = await File.ReadAllTextAsync($"/proc/{tah.Process.Id}/maps");
        Assert.Contains("TaH.Engine.dll", maps, StringComparison.Ordinal);
        Assert.DoesNotContain("TaH.Checkpoints.Writing.dll", maps, StringComparison.Ordinal);

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
        Assert.Contains("chat.completions", output, StringComparison.Ordinal); // the generation's log line
        Assert.Contains("HTTP POST /v1/chat/completions responded 200", output, StringComparison.Ordinal); // the requests' log lines
        Assert.Contains("HTTP POST /v1/chat/completions responded 415", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnUnknownWeightFormatIsOneLineAndExitCode2()
    {
        using var tah = TahProcess.Start("serve", "--model", TestModel.Directory, "--port", "0", "--weights", "int4");
        Assert.True(tah.Process.WaitForExit(TimeSpan.FromSeconds(60)));
        Assert.Equal(2, tah.Process.ExitCode);
        await tah.Drained;
        Assert.Equal("error: --weights must be fp32, bf16, q8_0 or q4_0 (got 'int4')", tah.Error.Trim());
    }

    [Fact]
    public async Task AnUnknownDeciderFormatIsOneLineAndExitCode2()
    {
        using var tah = TahProcess.Start("serve", "--model", TestModel.Directory, "--port", "0", "--weights", "q8_0", "--decider-weights", "q2_k");
        Assert.True(tah.Process.WaitForExit(TimeSpan.FromSeconds(60)));
        Assert.Equal(2, tah.Process.ExitCode);
        await tah.Drained;
        Assert.Equal("error: --decider-weights must be fp32, bf16, q8_0 or q4_0 (got 'q2_k')", tah.Error.Trim());
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
}
