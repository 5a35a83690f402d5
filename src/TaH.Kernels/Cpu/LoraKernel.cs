using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace TaH.Kernels.Cpu;

/// <summary>
/// One projection's part of a fused LoRA delta: output columns <c>[OutStart, OutStart + OutCount)</c>
/// take <c>B [OutCount, Rank]</c> times the down-projection's entries <c>[RankStart, RankStart + Rank)</c>.
/// B is packed transposed in tiles of <see cref="LoraKernel.TileColumns"/> outputs, from
/// <c>BOffset</c> elements into the packed B: tile t (outputs <c>[64t, 64t + w)</c>, w = 64 but for
/// the last) at <c>BOffset + 64 t Rank</c>, as <c>[Rank, w]</c> row-major. So consecutive outputs sit
/// side by side in a register and a tile is one sequential stream.
/// </summary>
public readonly record struct LoraSegment(int OutStart, int OutCount, int RankStart, int Rank, long BOffset);

/// <summary>
/// <c>y[row] += s B (A x[row])</c> for selected rows: the LoRA delta of a fused projection
/// (q|k|v, gate|up) whose B is block-diagonal, held as its blocks only. A and B are fp32, or bf16
/// when the checkpoint's values are exact in it (half the bytes, widened exactly in registers);
/// the arithmetic is fp32 either way. The rows are few (a step's depth-2 rows), so each weight is
/// read from memory once for every selected row: A's rows as dot products with x, then B's
/// columns 16 (or 8) outputs to a register, multiply-adding each rank entry of <c>A x</c>
/// broadcast (B's rows, a rank long, had cost a horizontal sum each). Both phases are shared out
/// over the pool.
/// </summary>
public static unsafe class LoraKernel
{
    /// <summary>Outputs per tile of the packed B.</summary>
    public const int TileColumns = 64;

    /// <param name="a"><c>A [rank, inFeatures]</c>, row-major.</param>
    /// <param name="b">The segments' B blocks, packed.</param>
    /// <param name="scaling">The adapter's scale s, applied to <c>A x</c>.</param>
    /// <param name="x">Activations <c>[*, inFeatures]</c>, row-major.</param>
    /// <param name="rows">The rows of <paramref name="x"/> and <paramref name="y"/> that take the delta.</param>
    /// <param name="y">Outputs <c>[*, outFeatures]</c>, row-major, added to in place.</param>
    public static void Add(
        float* a, int rank, int inFeatures, LoraSegment[] segments, float* b, float scaling,
        float* x, int[] rows, float* y, int outFeatures, CpuIsa? isa = null, CpuWorkerPool? pool = null) =>
        Run(a, b, bf16: false, rank, inFeatures, segments, scaling, x, rows, y, outFeatures, isa, pool);

    /// <summary>The same with A and B as bf16 bit patterns.</summary>
    public static void Add(
        ushort* a, int rank, int inFeatures, LoraSegment[] segments, ushort* b, float scaling,
        float* x, int[] rows, float* y, int outFeatures, CpuIsa? isa = null, CpuWorkerPool? pool = null) =>
        Run(a, b, bf16: true, rank, inFeatures, segments, scaling, x, rows, y, outFeatures, isa, pool);

    private static void Run(
        void* a, void* b, bool bf16, int rank, int inFeatures, LoraSegment[] segments, float scaling,
        float* x, int[] rows, float* y, int outFeatures, CpuIsa? isa, CpuWorkerPool? pool)
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
        job.Set(new Weights(a, b, bf16), rank, inFeatures, segments, scaling, x, rows, y, outFeatures, down, path);

        // One contiguous range per thread and phase: the matrices are a few hundred KB, and in
        // items of 4 rows or tiles the threads' reads interleaved in 8 KB pieces, which ran at a
        // third of the memory's speed.
        job.Phase = 0;
        job.PerItem = pool.EvenShare(rank);
        pool.Run(job, (rank + job.PerItem - 1) / job.PerItem);
        job.Phase = 1;
        job.PerItem = pool.EvenShare(job.SegmentTiles);
        pool.Run(job, (job.SegmentTiles + job.PerItem - 1) / job.PerItem);
        job.Clear();
    }

    /// <summary>A and B in one storage: A's rows as dot products with fp32 values, B's entries widened to fp32.</summary>
    private readonly struct Weights(void* a, void* b, bool bf16)
    {
        public float DotA(long offset, float* x, int n, CpuIsa isa) =>
            bf16 ? Dot((ushort*)a + offset, x, n, isa) : Dot((float*)a + offset, x, n, isa);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<float> B512(long offset) => bf16 ? Bf16Bits.Widen512((ushort*)b + offset) : Vector512.Load((float*)b + offset);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> B256(long offset) => bf16 ? Bf16Bits.Widen256((ushort*)b + offset) : Vector256.Load((float*)b + offset);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public float B(long offset) => bf16 ? Bf16Bits.ToSingle(((ushort*)b)[offset]) : ((float*)b)[offset];
    }

    private sealed class Job : PoolJob
    {
        [ThreadStatic]
        private static Job? _forThread;

        private Weights _weights;
        private int _rank;
        private int _in;
        private LoraSegment[] _segments = [];
        private float _scaling;
        private float* _x;
        private int[] _rows = [];
        private float* _y;
        private int _out;
        private float* _down;
        private CpuIsa _isa;
        private readonly NativeScratch _scratch = new();

        public static Job ForThread => _forThread ??= new Job();

        public int Phase { get; set; }

        /// <summary>A's rows (phase 0) or B's tiles (phase 1) per item.</summary>
        public int PerItem { get; set; }

        /// <summary>B's tiles over all segments.</summary>
        public int SegmentTiles { get; private set; }

        public float* Scratch(long floats) => _scratch.Reserve(floats);

        public void Set(Weights weights, int rank, int inFeatures, LoraSegment[] segments, float scaling, float* x, int[] rows, float* y, int outFeatures, float* down, CpuIsa isa)
        {
            _weights = weights;
            _rank = rank;
            _in = inFeatures;
            _segments = segments;
            _scaling = scaling;
            _x = x;
            _rows = rows;
            _y = y;
            _out = outFeatures;
            _down = down;
            _isa = isa;
            int total = 0;
            foreach (var s in segments)
            {
                total += Tiles(s);
            }

            SegmentTiles = total;
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
                int end = Math.Min(_rank, (item + 1) * PerItem);
                for (int r = item * PerItem; r < end; r++)
                {
                    for (int j = 0; j < _rows.Length; j++)
                    {
                        _down[((long)j * _rank) + r] = _scaling * _weights.DotA((long)r * _in, _x + ((long)_rows[j] * _in), _in, _isa);
                    }
                }

                return;
            }

            // Global tiles [first, last) of this item, over the segments in order.
            int first = item * PerItem, last = Math.Min(SegmentTiles, first + PerItem), start = 0;
            foreach (var s in _segments)
            {
                for (int t = Math.Max(first, start) - start; t < Math.Min(last, start + Tiles(s)) - start; t++)
                {
                    for (int j = 0; j < _rows.Length; j++)
                    {
                        AddTile(_weights, s, t, _down + ((long)j * _rank) + s.RankStart, _y + ((long)_rows[j] * _out) + s.OutStart, _isa);
                    }
                }

                start += Tiles(s);
            }
        }
    }

    private static int Tiles(LoraSegment s) => (s.OutCount + TileColumns - 1) / TileColumns;

    /// <summary><c>y[o] += sum_r B[o, r] down[r]</c> for the outputs of one tile of a segment.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddTile(Weights w, LoraSegment s, int tile, float* down, float* y, CpuIsa isa)
    {
        int first = tile * TileColumns, width = Math.Min(TileColumns, s.OutCount - first), c = 0;
        long tileStart = s.BOffset + ((long)first * s.Rank);
        y += first;
        if (isa == CpuIsa.Avx512)
        {
            // Four registers of outputs at a time: four independent multiply-add chains, not one a rank long.
            for (; c + 64 <= width; c += 64)
            {
                Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
                for (int r = 0; r < s.Rank; r++)
                {
                    long at = tileStart + ((long)r * width) + c;
                    var d = Vector512.Create(down[r]);
                    c0 = Avx512F.FusedMultiplyAdd(w.B512(at), d, c0);
                    c1 = Avx512F.FusedMultiplyAdd(w.B512(at + 16), d, c1);
                    c2 = Avx512F.FusedMultiplyAdd(w.B512(at + 32), d, c2);
                    c3 = Avx512F.FusedMultiplyAdd(w.B512(at + 48), d, c3);
                }

                (Vector512.Load(y + c) + c0).Store(y + c);
                (Vector512.Load(y + c + 16) + c1).Store(y + c + 16);
                (Vector512.Load(y + c + 32) + c2).Store(y + c + 32);
                (Vector512.Load(y + c + 48) + c3).Store(y + c + 48);
            }

            for (; c + 16 <= width; c += 16)
            {
                var sum = Vector512<float>.Zero;
                for (int r = 0; r < s.Rank; r++)
                {
                    sum = Avx512F.FusedMultiplyAdd(w.B512(tileStart + ((long)r * width) + c), Vector512.Create(down[r]), sum);
                }

                (Vector512.Load(y + c) + sum).Store(y + c);
            }
        }
        else if (isa == CpuIsa.Avx2)
        {
            for (; c + 32 <= width; c += 32)
            {
                Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
                for (int r = 0; r < s.Rank; r++)
                {
                    long at = tileStart + ((long)r * width) + c;
                    var d = Vector256.Create(down[r]);
                    c0 = Fma.MultiplyAdd(w.B256(at), d, c0);
                    c1 = Fma.MultiplyAdd(w.B256(at + 8), d, c1);
                    c2 = Fma.MultiplyAdd(w.B256(at + 16), d, c2);
                    c3 = Fma.MultiplyAdd(w.B256(at + 24), d, c3);
                }

                (Vector256.Load(y + c) + c0).Store(y + c);
                (Vector256.Load(y + c + 8) + c1).Store(y + c + 8);
                (Vector256.Load(y + c + 16) + c2).Store(y + c + 16);
                (Vector256.Load(y + c + 24) + c3).Store(y + c + 24);
            }

            for (; c + 8 <= width; c += 8)
            {
                var sum = Vector256<float>.Zero;
                for (int r = 0; r < s.Rank; r++)
                {
                    sum = Fma.MultiplyAdd(w.B256(tileStart + ((long)r * width) + c), Vector256.Create(down[r]), sum);
                }

                (Vector256.Load(y + c) + sum).Store(y + c);
            }
        }

        for (; c < width; c++)
        {
            float sum = 0;
            for (int r = 0; r < s.Rank; r++)
            {
                sum += w.B(tileStart + ((long)r * width) + c) * down[r];
            }

            y[c] += sum;
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

    /// <summary>bf16 weights widened in registers, two accumulators to hide the multiply-add latency.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Dot(ushort* p, float* q, int n, CpuIsa isa)
    {
        int i = 0;
        float sum = 0;
        if (isa == CpuIsa.Avx512)
        {
            Vector512<float> c0 = default, c1 = default;
            for (; i + 32 <= n; i += 32)
            {
                c0 = Avx512F.FusedMultiplyAdd(Bf16Bits.Widen512(p + i), Vector512.Load(q + i), c0);
                c1 = Avx512F.FusedMultiplyAdd(Bf16Bits.Widen512(p + i + 16), Vector512.Load(q + i + 16), c1);
            }

            for (; i + 16 <= n; i += 16)
            {
                c0 = Avx512F.FusedMultiplyAdd(Bf16Bits.Widen512(p + i), Vector512.Load(q + i), c0);
            }

            sum = Vector512.Sum(c0 + c1);
        }
        else if (isa == CpuIsa.Avx2)
        {
            Vector256<float> c0 = default, c1 = default;
            for (; i + 16 <= n; i += 16)
            {
                c0 = Fma.MultiplyAdd(Bf16Bits.Widen256(p + i), Vector256.Load(q + i), c0);
                c1 = Fma.MultiplyAdd(Bf16Bits.Widen256(p + i + 8), Vector256.Load(q + i + 8), c1);
            }

            for (; i + 8 <= n; i += 8)
            {
                c0 = Fma.MultiplyAdd(Bf16Bits.Widen256(p + i), Vector256.Load(q + i), c0);
            }

            sum = Vector256.Sum(c0 + c1);
        }

        for (; i < n; i++)
        {
            sum += Bf16Bits.ToSingle(p[i]) * q[i];
        }

        return sum;
    }
}
