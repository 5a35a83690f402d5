using System.Runtime.InteropServices;

namespace TaH.Engine.Serving;

/// <summary>
/// How the engine's native threads wait. libtorch's intra-op pool is libgomp's, whose idle workers
/// by default spin for 300,000 iterations after every parallel region: a decode step is hundreds
/// of short regions, so on a machine where anything else wants a core (a container's CPU limit, a
/// shared host) the spinning workers and the engine loop take turns on it, and throughput falls by
/// two orders of magnitude. OMP_WAIT_POLICY=PASSIVE makes them sleep at once instead. libgomp
/// reads its environment when libtorch loads, from the C environment, which .NET's
/// Environment.SetEnvironmentVariable does not change on Linux: hence setenv.
/// </summary>
public static partial class ThreadPolicy
{
    public const string OmpWaitPolicy = "OMP_WAIT_POLICY";

    /// <summary>
    /// Sets OMP_WAIT_POLICY=PASSIVE for this process unless the user set it. Call before anything
    /// loads libtorch (the first TorchSharp call); later it changes nothing. Returns the policy in force.
    /// </summary>
    public static string CooperateUnderContention()
    {
        if (Environment.GetEnvironmentVariable(OmpWaitPolicy) is { } chosen)
        {
            return chosen;
        }

        if (OperatingSystem.IsLinux())
        {
            _ = SetEnv(OmpWaitPolicy, "PASSIVE", 0);
        }

        Environment.SetEnvironmentVariable(OmpWaitPolicy, "PASSIVE"); // and for child processes
        return "PASSIVE";
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);
}
