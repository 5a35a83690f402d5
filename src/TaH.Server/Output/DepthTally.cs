namespace TaH.Server.Output;

/// <summary>
/// Counts generated tokens by depth (the number of passes their prediction took): what TaH's
/// usage figures report. Depth 2 or more is "took the second pass".
/// </summary>
public sealed class DepthTally
{
    public int Tokens { get; private set; }

    public int Depth2Tokens { get; private set; }

    public long DepthSum { get; private set; }

    public double Depth2Share => Tokens == 0 ? 0 : (double)Depth2Tokens / Tokens;

    public double AverageDepth => Tokens == 0 ? 0 : (double)DepthSum / Tokens;

    public void Add(int depth)
    {
        Tokens++;
        DepthSum += depth;
        if (depth >= 2)
        {
            Depth2Tokens++;
        }
    }

    public void Add(DepthTally other)
    {
        Tokens += other.Tokens;
        Depth2Tokens += other.Depth2Tokens;
        DepthSum += other.DepthSum;
    }
}
