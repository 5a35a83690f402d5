using System.Runtime.Intrinsics;
using TorchSharp;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using static TorchSharp.torch;

namespace TaH.Kernels.Cpu;

/// <summary>
/// The k largest entries of each row, as <c>torch.topk(k)</c> returns them (descending; among
/// equal values the lower index first), for finite values. A bar first: the k-th largest of the
/// row's chunk maxima, which at least k entries reach, so every entry of the top k does too. Only
/// the chunks whose maximum reaches it are scanned, and the few entries that clear it are sorted.
/// For k = 100 of a 151,936-entry vocabulary that is one pass of SIMD maxima and a sort of a few
/// hundred pairs, where torch's CPU topk takes about a millisecond per row. Rows go to the worker
/// pool.
/// </summary>
public static unsafe class CpuTopK
{
    /// <summary>Entries per chunk: enough for SIMD maxima to run at memory speed, few enough that the bar is tight.</summary>
    private const int Chunk = 256;

    /// <summary>
    /// The top <paramref name="k"/> of every row, or of the rows <paramref name="only"/> names (in
    /// its order), read in place; tensors the pass does not read (not fp32, not on the CPU) go to torch's topk.
    /// </summary>
    public static (Tensor Values, Tensor Indices) Select(Tensor rows, int k, int[]? only = null, CpuWorkerPool? pool = null)
    {
        if (rows.dtype != ScalarType.Float32 || rows.device_type != DeviceType.CPU || rows.dim() != 2 || k < 1 || k > rows.shape[1])
        {
            using var selected = only is null ? rows.alias() : rows.index_select(0, tensor(only.Select(i => (long)i).ToArray(), device: rows.device));
            return selected.topk(k);
        }

        foreach (int row in only ?? [])
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)rows.shape[0], nameof(only));
        }

        pool ??= CpuWorkerPool.Shared;
        using var input = rows.contiguous();
        int count = only?.Length ?? (int)rows.shape[0], n = (int)rows.shape[1];
        var values = empty(count, k, dtype: ScalarType.Float32);
        var indices = empty(count, k, dtype: ScalarType.Int64);
        var job = Job.ForThread;
        job.Set(TensorMemory.Pointer<float>(input), n, k, only, TensorMemory.Pointer<float>(values), TensorMemory.Pointer<long>(indices));
        pool.Run(job, count);
        job.Clear();
        return (values, indices);
    }

    private sealed class Job : PoolJob
    {
        [ThreadStatic]
        private static Job? _forThread;

        private float* _source;
        private int _n;
        private int _k;
        private int[]? _only;
        private float* _values;
        private long* _indices;

        public static Job ForThread => _forThread ??= new Job();

        public void Set(float* source, int n, int k, int[]? only, float* values, long* indices)
        {
            _source = source;
            (_n, _k, _only) = (n, k, only);
            _values = values;
            _indices = indices;
        }

        public void Clear()
        {
            _source = null;
            _only = null;
            _values = null;
            _indices = null;
        }

        public override void Execute(int item) =>
            SelectRow(_source + ((long)(_only?[item] ?? item) * _n), _n, _k, RowSpace.ForThread, _values + ((long)item * _k), _indices + ((long)item * _k));
    }

    /// <summary>A thread's chunk maxima and candidates, kept from row to row.</summary>
    private sealed class RowSpace
    {
        [ThreadStatic]
        private static RowSpace? _forThread;

        public static RowSpace ForThread => _forThread ??= new RowSpace();

        public float[] Maxima { get; private set; } = [];

        /// <summary>The maxima again, sorted to find the bar.</summary>
        public float[] Sorted { get; private set; } = [];

        public (float Value, int Index)[] Candidates { get; private set; } = [];

        public int CandidateCount { get; set; }

        public void Reserve(int chunks)
        {
            if (Maxima.Length < chunks)
            {
                Maxima = new float[chunks];
                Sorted = new float[chunks];
            }

            CandidateCount = 0;
        }

        public void Add(float value, int index)
        {
            if (CandidateCount == Candidates.Length)
            {
                var grown = new (float, int)[Math.Max(1024, Candidates.Length * 2)];
                Candidates.AsSpan().CopyTo(grown);
                Candidates = grown;
            }

            Candidates[CandidateCount++] = (value, index);
        }
    }

    private static void SelectRow(float* row, int n, int k, RowSpace space, float* values, long* indices)
    {
        int chunks = (n + Chunk - 1) / Chunk;
        space.Reserve(chunks);
        var maxima = space.Maxima.AsSpan(0, chunks);
        for (int c = 0; c < chunks; c++)
        {
            maxima[c] = TensorPrimitives.Max(new ReadOnlySpan<float>(row + ((long)c * Chunk), Math.Min(Chunk, n - (c * Chunk))));
        }

        // The bar: at least k chunks have a maximum at or above it, so at least k entries reach it.
        float bar = float.NegativeInfinity;
        if (chunks >= k)
        {
            var scratch = space.Sorted.AsSpan(0, chunks);
            maxima.CopyTo(scratch);
            bar = KthLargest(scratch, k);
        }

        for (int c = 0; c < chunks; c++)
        {
            if (maxima[c] < bar)
            {
                continue;
            }

            int from = c * Chunk, to = Math.Min(n, from + Chunk), i = from;
            var vectorBar = Vector256.Create(bar);
            for (; i + 8 <= to; i += 8)
            {
                if (Vector256.GreaterThanOrEqualAny(Vector256.Load(row + i), vectorBar))
                {
                    for (int j = i; j < i + 8; j++)
                    {
                        if (row[j] >= bar)
                        {
                            space.Add(row[j], j);
                        }
                    }
                }
            }

            for (; i < to; i++)
            {
                if (row[i] >= bar)
                {
                    space.Add(row[i], i);
                }
            }
        }

        var candidates = space.Candidates.AsSpan(0, space.CandidateCount);
        candidates.Sort(default(Order));
        for (int j = 0; j < k; j++)
        {
            values[j] = candidates[j].Value;
            indices[j] = candidates[j].Index;
        }
    }

    /// <summary>The k-th largest of <paramref name="values"/> (reordered in place): a quickselect.</summary>
    private static float KthLargest(Span<float> values, int k)
    {
        int target = values.Length - k, low = 0, high = values.Length - 1;
        while (low < high)
        {
            float pivot = values[low + ((high - low) / 2)];
            int i = low, j = high;
            while (i <= j)
            {
                while (values[i] < pivot)
                {
                    i++;
                }

                while (values[j] > pivot)
                {
                    j--;
                }

                if (i <= j)
                {
                    (values[i], values[j]) = (values[j], values[i]);
                    i++;
                    j--;
                }
            }

            // [low, j] <= pivot <= [i, high], and (j, i) holds the pivot's equals.
            if (target <= j)
            {
                high = j;
            }
            else if (target >= i)
            {
                low = i;
            }
            else
            {
                return values[target];
            }
        }

        return values[target];
    }

    /// <summary>Descending by value, ascending by index among equals.</summary>
    private readonly struct Order : IComparer<(float Value, int Index)>
    {
        public int Compare((float Value, int Index) a, (float Value, int Index) b) =>
            a.Value != b.Value ? b.Value.CompareTo(a.Value) : a.Index.CompareTo(b.Index);
    }
}
