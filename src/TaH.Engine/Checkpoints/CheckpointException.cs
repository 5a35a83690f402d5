namespace TaH.Engine.Checkpoints;

/// <summary>
/// A checkpoint, tokenizer or configuration file that cannot be used. The message names the file
/// and the problem, so the command line and the server can show it to the user as it is.
/// </summary>
public sealed class CheckpointException : Exception
{
    public CheckpointException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner)
    {
        FilePath = path;
        Problem = problem;
    }

    public string FilePath { get; }

    public string Problem { get; }
}
