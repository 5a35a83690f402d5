using System.Diagnostics;

namespace TaH.Server.Bench;

/// <summary>
/// Processes that each keep one core busy (a shell loop), beside the benchmark: what a shared host
/// or a container's neighbour does to the engine's threads. Disposing ends them.
/// </summary>
internal sealed class BusyLoad : IDisposable
{
    private readonly Process[] _processes;

    private BusyLoad(Process[] processes) => _processes = processes;

    public static BusyLoad Start(int processes) =>
        new([.. Enumerable.Range(0, processes).Select(_ => Process.Start(new ProcessStartInfo("sh", ["-c", "while :; do :; done"]) { UseShellExecute = false })
            ?? throw new InvalidOperationException("could not start a busy-loop process"))]);

    public void Dispose()
    {
        foreach (var process in _processes)
        {
            process.Kill();
            process.WaitForExit();
            process.Dispose();
        }
    }
}
