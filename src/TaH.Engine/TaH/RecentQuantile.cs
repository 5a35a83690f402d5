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
    private double[]? _suffixSums; // _suffixSums[i] = sum of _sorted[i..]; rebuilt after a change

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
        _suffixSums = other._suffixSums;
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
        _suffixSums = null;
    }

    /// <summary>E[(x - v)+] over the values: what holding out for more than <paramref name="v"/> gains on average.</summary>
    public double ExpectedExcess(double v)
    {
        int n = _sorted.Count;
        if (n == 0)
        {
            return 0;
        }

        if (_suffixSums is null)
        {
            _suffixSums = new double[n + 1];
            for (int i = n - 1; i >= 0; i--)
            {
                _suffixSums[i] = _suffixSums[i + 1] + _sorted[i];
            }
        }

        int first = FirstAbove(v);
        return (_suffixSums[first] - (v * (n - first))) / n;
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

        return (double)(n - FirstAbove(threshold)) / n;
    }

    public RecentQuantile Clone() => new(this);

    /// <summary>The first index whose value exceeds <paramref name="threshold"/>.</summary>
    private int FirstAbove(double threshold)
    {
        int lo = 0, hi = _sorted.Count;
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

        return lo;
    }

    private int IndexOf(double value)
    {
        int at = _sorted.BinarySearch(value);
        return at >= 0 ? at : throw new InvalidOperationException("the window lost track of a value");
    }
}
