namespace TaH.Engine.TaH;

/// <summary>
/// The last <c>capacity</c> values seen (decider probabilities), kept sorted, so the threshold
/// that a given share of them exceeds is one look-up. Adding is O(capacity) (one shift of the
/// sorted array), which at the few hundred to few thousand values kept here is a memmove.
/// </summary>
public sealed class RecentQuantile
{
    private readonly double[] _ring;
    private readonly List<double> _sorted;
    private int _next;

    public RecentQuantile(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _ring = new double[capacity];
        _sorted = new List<double>(capacity);
    }

    private RecentQuantile(RecentQuantile other)
    {
        _ring = (double[])other._ring.Clone();
        _sorted = [.. other._sorted];
        _next = other._next;
    }

    public int Count => _sorted.Count;

    public void Add(double value)
    {
        if (double.IsNaN(value))
        {
            throw new ArgumentException("a probability cannot be NaN", nameof(value));
        }

        if (_sorted.Count == _ring.Length)
        {
            _sorted.RemoveAt(IndexOf(_ring[_next]));
        }

        _ring[_next] = value;
        _next = (_next + 1) % _ring.Length;
        int at = _sorted.BinarySearch(value);
        _sorted.Insert(at < 0 ? ~at : at, value);
    }

    /// <summary>
    /// A threshold that at most <paramref name="share"/> of the values exceed (strictly): the
    /// value of rank n - 1 - floor(share n). Negative infinity when every value may exceed it;
    /// null when no value has been seen.
    /// </summary>
    public double? ThresholdFor(double share)
    {
        int n = _sorted.Count;
        if (n == 0)
        {
            return null;
        }

        int above = (int)Math.Floor(Math.Clamp(share, 0, 1) * n);
        return above >= n ? double.NegativeInfinity : _sorted[n - 1 - above];
    }

    /// <summary>The share of the values above <paramref name="threshold"/> (0 when none were seen).</summary>
    public double ShareAbove(double threshold)
    {
        int n = _sorted.Count;
        if (n == 0)
        {
            return 0;
        }

        // The first index whose value exceeds the threshold.
        int lo = 0, hi = n;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (_sorted[mid] > threshold)
            {
                hi = mid;
            }
            else
            {
                lo = mid + 1;
            }
        }

        return (double)(n - lo) / n;
    }

    public RecentQuantile Clone() => new(this);

    private int IndexOf(double value)
    {
        int at = _sorted.BinarySearch(value);
        return at >= 0 ? at : throw new InvalidOperationException("the window lost track of a value");
    }
}
