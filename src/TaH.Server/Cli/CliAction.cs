using System.Text.Json;
using TaH.Engine.Checkpoints;

namespace TaH.Server.Cli;

/// <summary>
/// Runs a verb and turns the failures a user can cause (a bad checkpoint, a bad flag, a missing
/// file) into one line on stderr and exit code 2; anything else is a bug and says so.
/// </summary>
internal static class CliAction
{
    public static int Run(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (e is CheckpointException or ArgumentException or IOException or JsonException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"error: {Describe(e)}");
            return 2;
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("TAH_DEBUG") is null)
        {
            Console.Error.WriteLine($"internal error ({e.GetType().Name}): {e.Message}");
            Console.Error.WriteLine("set TAH_DEBUG=1 to see the stack trace");
            return 70;
        }
    }

    // ArgumentException appends " (Parameter 'x')", which means nothing to a user of the CLI.
    private static string Describe(Exception e) =>
        e is ArgumentException { ParamName: { } name } a ? a.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : e.Message;
}
