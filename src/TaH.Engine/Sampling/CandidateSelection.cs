namespace TaH.Engine.Sampling;

/// <summary>
/// Partial selection over token ids ordered by key descending, ties to the lower id (a total order,
/// so results do not depend on the input order). Quickselect keeps top-k and top-p at O(vocab)
/// instead of sorting the whole vocabulary on every token.
/// </summary>
internal static class CandidateSelection
{
    private const int SmallRange = 16;

    // Far above 2*log2(152k); past it the input is adversarial for median-of-three and we sort.
    private const int MaxRounds = 64;

    /// <summary>Rearranges ids so that ids[..k] hold the k best of ids[..n] (in no particular order).</summary>
    public static void SelectTop(Span<int> ids, int n, int k, float[] key)
    {
        int lo = 0, hi = n;
        for (var round = 0; lo < k && k < hi; round++)
        {
            if (hi - lo <= SmallRange || round == MaxRounds)
            {
                Sort(ids[lo..hi], key);
                return;
            }

            var p = Partition(ids, lo, hi, key);
            if (p < k)
            {
                lo = p + 1;
            }
            else
            {
                hi = p;
            }
        }
    }

    /// <summary>
    /// Finds the smallest m such that the m best of ids[..n] carry at least <paramref name="target"/>
    /// of the weight, and rearranges ids so that ids[..m] hold them. Returns m (at least 1 when
    /// target &gt; 0; n when rounding leaves the whole range short of it).
    /// </summary>
    public static int SelectTopMass(Span<int> ids, int n, float[] key, float[] weight, double target)
    {
        int lo = 0, hi = n;
        double before = 0; // weight of ids[..lo], all in the answer; below target
        for (var round = 0; hi - lo > SmallRange && round < MaxRounds; round++)
        {
            var p = Partition(ids, lo, hi, key);
            double left = 0;
            for (var i = lo; i < p; i++)
            {
                left += weight[ids[i]];
            }

            if (before + left >= target)
            {
                hi = p;
            }
            else if (before + left + weight[ids[p]] >= target)
            {
                return p + 1;
            }
            else
            {
                before += left + weight[ids[p]];
                lo = p + 1;
            }
        }

        Sort(ids[lo..hi], key);
        for (var i = lo; i < hi; i++)
        {
            before += weight[ids[i]];
            if (before >= target)
            {
                return i + 1;
            }
        }

        return hi;
    }

    /// <summary>Sorts ids best first.</summary>
    public static void Sort(Span<int> ids, float[] key)
    {
        if (ids.Length <= SmallRange)
        {
            for (var i = 1; i < ids.Length; i++)
            {
                var id = ids[i];
                var j = i;
                for (; j > 0 && Before(id, ids[j - 1], key); j--)
                {
                    ids[j] = ids[j - 1];
                }

                ids[j] = id;
            }

            return;
        }

        ids.Sort(new ByKey(key));
    }

    // A struct comparer: a lambda capturing key would allocate on every call, even for short ranges.
    private readonly struct ByKey(float[] key) : IComparer<int>
    {
        public int Compare(int a, int b) => a == b ? 0 : Before(a, b, key) ? -1 : 1;
    }

    private static bool Before(int a, int b, float[] key)
    {
        var ka = key[a];
        var kb = key[b];
        return ka > kb || (ka == kb && a < b);
    }

    /// <summary>Median-of-three Lomuto partition of ids[lo..hi]; returns the pivot's final index.</summary>
    private static int Partition(Span<int> ids, int lo, int hi, float[] key)
    {
        var last = hi - 1;
        var mid = lo + ((hi - lo) / 2);
        if (Before(ids[mid], ids[lo], key))
        {
            (ids[mid], ids[lo]) = (ids[lo], ids[mid]);
        }

        if (Before(ids[last], ids[lo], key))
        {
            (ids[last], ids[lo]) = (ids[lo], ids[last]);
        }

        if (Before(ids[last], ids[mid], key))
        {
            (ids[last], ids[mid]) = (ids[mid], ids[last]);
        }

        // The median is at mid; park it at the end while partitioning.
        (ids[mid], ids[last]) = (ids[last], ids[mid]);
        var pivot = ids[last];
        var store = lo;
        for (var i = lo; i < last; i++)
        {
            if (Before(ids[i], pivot, key))
            {
                (ids[i], ids[store]) = (ids[store], ids[i]);
                store++;
            }
        }

        (ids[store], ids[last]) = (ids[last], ids[store]);
        return store;
    }
}
