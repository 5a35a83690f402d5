using System.Diagnostics;

namespace TaH.Engine.Tests.Cli;

/// <summary>Runs the real <c>tah</c> executable, as a user would.</summary>
internal static class TahProcess
{
    public static (int ExitCode, string Stdout, string Stderr) Run(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tah.dll"));
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment.Remove("TAH_DEBUG");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"tah {string.Join(' ', args)} did not finish");
        }

        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
