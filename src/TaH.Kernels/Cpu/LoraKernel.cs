using System.Runtime.CompilerServices;
using System.Numerics.Tensors;

namespace TaH.Kernels.Cpu;

/// <summary>
/// One projection's part of a fused LoRA delta: output columns <c>[OutStart, OutStart + OutCount)</c>
/// take <c>B [OutCount, Rank]</c> (row-major, at <c>BOffset</c> floats into the packed B) times the
/// down-projection's entries <c>[RankStart, RankStart + Rank)</c>.
/// </summary>
public readonly record struct LoraSegment(int OutStart, int OutCount, int RankStart, int Rank, long BOffset);

/// <summary>
/// <c>y[row] += B (A x[row])</c> in fp32 for selected rows: the LoRA delta of a fused projection
/// (q|k|v, gate|up) whose B is block-diagonal, held as its blocks only. The rows are few (a step's
/// depth-2 rows), so each weight row is read from memory once and dotted with every selected row
/// from cache; A's rows, then B's, are shared out over the pool.
/// </summary>
public static unsafe class LoraKernel
{
    private const int DownRowsPerItem = 4;
    private const int UpRowsPerItem = 128;

    /// <param name="a"><c>A [rank, inFeatures]</c>, row-major.</param>
    /// <param name="b">The segments' B blocks, packed.</param>
    /// <param name="x">Activations <c>[*, inFeatures]</c>, row-major.</param>
    /// <param name="rows">The rows of <paramref name="x"/> and <paramref name="y"/> that take the delta.</param>
    /// <param name="y">Outputs <c>[*, outFeatures]</c>, row-major, added to in place.</param>
    public static void Add(
        float* a, int rank, int inFeatures, LoraSegment[] segments, float* b,
        float* x, int[] rows, float* y, int outFeatures, CpuIsa? isa = null, CpuWorkerPool? pool = null)
    {
        var path = isa ?? CpuIsas.Best;
        if (!CpuIsas.IsSupported(path))
        {
            throw new PlatformNotSupportedException($"this CPU has no {path} path");
        }

        if (rows.Length == 0 || rank == 0)
        {
            return;
        }

        pool ??= CpuWorkerPool.Shared;
        var job = Job.ForThread;
        float* down = job.Scratch((long)rows.Length * rank);
        job.Set(a, rank, inFeatures, segments, b, x, rows, y, outFeatures, down, path);

        job.Phase = 0;
        pool.Run(job, (rank + DownRowsPerItem - 1) / DownRowsPerItem);
        job.Phase = 1;
        pool.Run(job, (job.SegmentRows + UpRowsPerItem - 1) / UpRowsPerItem);
        job.Clear();
    }

    private sealed class Job : PoolJob
    {
        [ThreadStatic]
        private static Job? _forThread;

        private float* _a;
        private int _rank;
        private int _in;
        private LoraSegment[] _segments = [];
        private float* _b;
        private float* _x;
        private int[] _rows = [];
        private float* _y;
        private int _out;
        private float* _down;
        private CpuIsa _isa;
        private readonly NativeScratch _scratch = new();

        public static Job ForThread => _forThread ??= new Job();

        public int Phase { get; set; }

        /// <summary>Output rows of B over all segments.</summary>
        public int SegmentRows { get; private set; }

        public float* Scratch(long floats) => _scratch.Reserve(floats);

        public void Set(float* a, int rank, int inFeatures, LoraSegment[] segments, float* b, float* x, int[] rows, float* y, int outFeatures, float* down, CpuIsa isa)
        {
            _a = a;
            _rank = rank;
            _in = inFeatures;
            _segments = segments;
            _b = b;
            _x = x;
            _rows = rows;
            _y = y;
            _out = outFeatures;
            _down = down;
            _isa = isa;
            int total = 0;
            foreach (var s in segments)
            {
                total += s.OutCount;
            }

            SegmentRows = total;
        }

        public void Clear()
        {
            _segments = [];
            _rows = [];
        }

        public override void Execute(int item)
        {
            if (Phase == 0)
            {
                int end = Math.Min(_rank, (item + 1) * DownRowsPerItem);
                for (int r = item * DownRowsPerItem; r < end; r++)
                {
                    float* weights = _a + ((long)r * _in);
                    for (int j = 0; j < _rows.Length; j++)
                    {
                        _down[((long)j * _rank) + r] = Dot(weights, _x + ((long)_rows[j] * _in), _in, _isa);
                    }
                }

                return;
            }

            // Global B rows [first, last) of this item, over the segments in order.
            int first = item * UpRowsPerItem, last = Math.Min(SegmentRows, first + UpRowsPerItem), start = 0;
            foreach (var s in _segments)
            {
                int from = Math.Max(first, start), to = Math.Min(last, start + s.OutCount);
                for (int g = from; g < to; g++)
                {
                    int o = g - start;
                    float* weights = _b + s.BOffset + ((long)o * s.Rank);
                    for (int j = 0; j < _rows.Length; j++)
                    {
                        _y[((long)_rows[j] * _out) + s.OutStart + o] += Dot(weights, _down + ((long)j * _rank) + s.RankStart, s.Rank, _isa);
                    }
                }

                start += s.OutCount;
            }
        }
    }

    /// <summary>The SIMD paths use the runtime's dot product (its widest vectors); scalar is a plain loop.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot(float* p, float* q, int n, CpuIsa isa)
    {
        if (isa != CpuIsa.Scalar)
        {
            return TensorPrimitives.Dot(new ReadOnlySpan<float>(p, n), new ReadOnlySpan<float>(q, n));
        }

        float sum = 0;
        for (int i = 0; i < n; i++)
        {
            sum += p[i] * q[i];
        }

        return sum;
    }
}
