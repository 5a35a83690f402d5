using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels.Cpu;

/// <summary>
/// The k largest entries of each row, as <c>torch.topk(k)</c> returns them (descending; among
/// equal values the lower index first), in one pass: a k-entry min-heap whose root is the bar a
/// value must clear, the row scanned 8 at a time against it. For k = 100 of a 151,936-entry
/// vocabulary the heap changes a few hundred times, so the pass runs at memory speed, where
/// torch's CPU topk takes about a millisecond per row. Rows, and the column ranges of a row when
/// rows are fewer than threads, go to the worker pool; a row's ranges' heaps merge at the end.
/// </summary>
public static unsafe class CpuTopK
{
    /// <summary>Below this many columns a row is not split.</summary>
    private const int MinSplitColumns = 1 << 14;

    public static (Tensor Values, Tensor Indices) Select(Tensor rows, int k, CpuWorkerPool? pool = null)
    {
        if (rows.dtype != ScalarType.Float32 || rows.device_type != DeviceType.CPU || rows.dim() != 2 || k < 1 || k > rows.shape[1])
        {
            return rows.topk(k);
        }

        pool ??= CpuWorkerPool.Shared;
        using var input = rows.contiguous();
        int count = (int)rows.shape[0], n = (int)rows.shape[1];
        var values = empty(count, k, dtype: ScalarType.Float32);
        var indices = empty(count, k, dtype: ScalarType.Int64);
        // Each range must hold at least k entries to fill its heap.
        int parts = count >= pool.Threads || n < MinSplitColumns ? 1 : Math.Max(1, Math.Min(pool.Threads, n / Math.Max(k, MinSplitColumns / 4)));
        var job = Job.ForThread;
        job.Set(TensorMemory.Pointer<float>(input), n, k, parts, count, TensorMemory.Pointer<float>(values), TensorMemory.Pointer<long>(indices));
        pool.Run(job, count * parts);
        if (parts > 1)
        {
            job.Merge();
        }

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
        private int _parts;
        private int _rows;
        private float* _values;
        private long* _indices;
        private (float Value, int Index)[][] _heaps = [];
        private (float Value, int Index)[] _merged = [];

        public static Job ForThread => _forThread ??= new Job();

        public void Set(float* source, int n, int k, int parts, int rows, float* values, long* indices)
        {
            (_n, _k, _parts, _rows) = (n, k, parts, rows);
            _source = source;
            _values = values;
            _indices = indices;
            int items = rows * parts;
            if (_heaps.Length < items || (_heaps.Length > 0 && _heaps[0].Length != k))
            {
                _heaps = [.. Enumerable.Range(0, Math.Max(items, _heaps.Length)).Select(_ => new (float, int)[k])];
            }
        }

        public void Clear()
        {
            _source = null;
            _values = null;
            _indices = null;
        }

        public override void Execute(int item)
        {
            int row = item / _parts, part = item % _parts;
            int from = (int)((long)_n * part / _parts), to = (int)((long)_n * (part + 1) / _parts);
            var heap = _heaps[item];
            SelectRange(_source + ((long)row * _n), from, to, heap);
            if (_parts == 1)
            {
                Array.Sort(heap, Order);
                Write(row, heap);
            }
        }

        /// <summary>Each row's parts' heaps together hold its top k: the best k of them, in order.</summary>
        public void Merge()
        {
            if (_merged.Length != _parts * _k)
            {
                _merged = new (float, int)[_parts * _k];
            }

            var all = _merged;
            for (int row = 0; row < _rows; row++)
            {
                for (int p = 0; p < _parts; p++)
                {
                    _heaps[(row * _parts) + p].CopyTo(all, p * _k);
                }

                Array.Sort(all, Order);
                Write(row, all);
            }
        }

        /// <summary>The first k of <paramref name="sorted"/> as the row's output.</summary>
        private void Write(int row, (float Value, int Index)[] sorted)
        {
            for (int j = 0; j < _k; j++)
            {
                _values[((long)row * _k) + j] = sorted[j].Value;
                _indices[((long)row * _k) + j] = sorted[j].Index;
            }
        }
    }

    /// <summary>Descending by value, ascending by index among equals.</summary>
    private static readonly Comparison<(float Value, int Index)> Order =
        static (a, b) => a.Value != b.Value ? b.Value.CompareTo(a.Value) : a.Index.CompareTo(b.Index);

    /// <summary>The top <c>heap.Length</c> of <c>row[from..to)</c>, as a min-heap.</summary>
    private static void SelectRange(float* row, int from, int to, (float Value, int Index)[] heap)
    {
        int k = heap.Length;
        for (int i = 0; i < k; i++)
        {
            heap[i] = (row[from + i], from + i);
        }

        for (int i = (k / 2) - 1; i >= 0; i--)
        {
            SiftDown(heap, i);
        }

        int next = from + k;
        for (; next + 8 <= to; next += 8)
        {
            if (Vector256.GreaterThanAny(Vector256.Load(row + next), Vector256.Create(heap[0].Value)))
            {
                for (int i = next; i < next + 8; i++)
                {
                    Offer(heap, row[i], i);
                }
            }
        }

        for (; next < to; next++)
        {
            Offer(heap, row[next], next);
        }
    }

    /// <summary>A later index displaces the root only with a strictly larger value (lower index first among equals).</summary>
    private static void Offer((float Value, int Index)[] heap, float value, int index)
    {
        if (value > heap[0].Value)
        {
            heap[0] = (value, index);
            SiftDown(heap, 0);
        }
    }

    /// <summary>Min-heap on value; among equal values the higher index is "smaller" (leaves first).</summary>
    private static void SiftDown((float Value, int Index)[] heap, int i)
    {
        int n = heap.Length;
        while (true)
        {
            int smallest = i, left = (2 * i) + 1, right = left + 1;
            if (left < n && Below(heap[left], heap[smallest]))
            {
                smallest = left;
            }

            if (right < n && Below(heap[right], heap[smallest]))
            {
                smallest = right;
            }

            if (smallest == i)
            {
                return;
            }

            (heap[i], heap[smallest]) = (heap[smallest], heap[i]);
            i = smallest;
        }
    }

    private static bool Below((float Value, int Index) a, (float Value, int Index) b) =>
        a.Value < b.Value || (a.Value == b.Value && a.Index > b.Index);
}
