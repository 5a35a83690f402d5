using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace TaH.Kernels.Cpu;

/// <summary>
/// <c>y = x W^T (+ bias)</c> for a <see cref="Bf16Matrix"/> W and fp32 activations: the weights
/// widen to fp32 in registers (a shift) and multiply-add with the activations as they are. Half
/// the bytes of fp32 per decode step; same tiling and pool as <see cref="Q8_0Gemm"/>.
/// </summary>
public static unsafe class Bf16Gemm
{
    private const long InlineBytes = BlockGemm.InlineBytes;

    private static readonly CpuWorkerPool Inline = new(1);

    public static void Multiply(Bf16Matrix weights, float* x, int rows, float* y, float* bias = null, CpuIsa? isa = null, CpuWorkerPool? pool = null)
    {
        var path = isa ?? CpuIsas.Best;
        if (!CpuIsas.IsSupported(path))
        {
            throw new PlatformNotSupportedException($"this CPU has no {path} path");
        }

        long started = KernelClock.Start();
        // By default, work too small to share (the decider's smallest layers) stays on the calling thread.
        pool ??= weights.Bytes * (long)rows < InlineBytes ? Inline : CpuWorkerPool.Shared;
        var job = Job.ForThread;
        float* activations = x;
        if (weights.PaddedColumns != weights.Columns)
        {
            // Rows padded with zeros to whole chunks, in this thread's scratch.
            activations = job.Scratch((long)rows * weights.PaddedColumns);
            for (int r = 0; r < rows; r++)
            {
                var row = new Span<float>(activations + ((long)r * weights.PaddedColumns), weights.PaddedColumns);
                new ReadOnlySpan<float>(x + ((long)r * weights.Columns), weights.Columns).CopyTo(row);
                row[weights.Columns..].Clear();
            }
        }

        int tilesPerItem = Math.Clamp(weights.Tiles / (pool.Threads * 8), 1, 16);
        job.Set(weights, activations, rows, y, bias, path, tilesPerItem);
        pool.Run(job, (weights.Tiles + tilesPerItem - 1) / tilesPerItem);
        job.Clear();
        KernelClock.Stop(started);
    }

    private sealed class Job : PoolJob
    {
        [ThreadStatic]
        private static Job? _forThread;

        private Bf16Matrix? _weights;
        private float* _x;
        private int _rows;
        private float* _y;
        private float* _bias;
        private CpuIsa _isa;
        private int _tilesPerItem;
        private readonly NativeScratch _scratch = new();

        public static Job ForThread => _forThread ??= new Job();

        public float* Scratch(long floats) => _scratch.Reserve(floats);

        public void Set(Bf16Matrix weights, float* x, int rows, float* y, float* bias, CpuIsa isa, int tilesPerItem)
        {
            _weights = weights;
            _x = x;
            _rows = rows;
            _y = y;
            _bias = bias;
            _isa = isa;
            _tilesPerItem = tilesPerItem;
        }

        public void Clear() => _weights = null;

        public override void Execute(int item)
        {
            var w = _weights!;
            int end = Math.Min(w.Tiles, (item + 1) * _tilesPerItem);
            for (int tile = item * _tilesPerItem; tile < end; tile++)
            {
                int m = 0;
                switch (_isa)
                {
                    case CpuIsa.Avx512:
                        for (; m + 4 <= _rows; m += 4)
                        {
                            Avx512Rows4(w, tile, _x, m, _y, _bias);
                        }

                        break;
                    case CpuIsa.Avx2:
                        for (; m + 2 <= _rows; m += 2)
                        {
                            Avx2Rows2(w, tile, _x, m, _y, _bias);
                        }

                        break;
                }

                for (; m < _rows; m++)
                {
                    Row(w, tile, _x, m, _y, _bias, _isa);
                }
            }
        }
    }

    private static void Write(Bf16Matrix w, int tile, int lane, int row, float* y, float* bias, float sum)
    {
        int n = (tile * Bf16Matrix.TileRows) + lane;
        if (n < w.Rows)
        {
            y[((long)row * w.Rows) + n] = bias is null ? sum : sum + bias[n];
        }
    }

    /// <summary>4 weight rows x 4 activation rows, 16 columns per register, two registers per chunk.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512Rows4(Bf16Matrix w, int tile, float* x, int m, float* y, float* bias)
    {
        ushort* q = w.Tile(tile);
        int k = w.PaddedColumns;
        float* x0 = x + ((long)m * k), x1 = x0 + k, x2 = x1 + k, x3 = x2 + k;
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        for (int c = 0; c < k; c += 16)
        {
            // Chunk c / 32 holds each row's 32 columns side by side; 16 of them per step.
            ushort* chunk = q + ((c / Bf16Matrix.Chunk) * Bf16Matrix.TileRows * Bf16Matrix.Chunk) + (c % Bf16Matrix.Chunk);
            var a0 = Vector512.Load(x0 + c);
            var a1 = Vector512.Load(x1 + c);
            var a2 = Vector512.Load(x2 + c);
            var a3 = Vector512.Load(x3 + c);
            var w0 = Bf16Bits.Widen512(chunk);
            c00 = Avx512F.FusedMultiplyAdd(w0, a0, c00);
            c01 = Avx512F.FusedMultiplyAdd(w0, a1, c01);
            c02 = Avx512F.FusedMultiplyAdd(w0, a2, c02);
            c03 = Avx512F.FusedMultiplyAdd(w0, a3, c03);
            var w1 = Bf16Bits.Widen512(chunk + 32);
            c10 = Avx512F.FusedMultiplyAdd(w1, a0, c10);
            c11 = Avx512F.FusedMultiplyAdd(w1, a1, c11);
            c12 = Avx512F.FusedMultiplyAdd(w1, a2, c12);
            c13 = Avx512F.FusedMultiplyAdd(w1, a3, c13);
            var w2 = Bf16Bits.Widen512(chunk + 64);
            c20 = Avx512F.FusedMultiplyAdd(w2, a0, c20);
            c21 = Avx512F.FusedMultiplyAdd(w2, a1, c21);
            c22 = Avx512F.FusedMultiplyAdd(w2, a2, c22);
            c23 = Avx512F.FusedMultiplyAdd(w2, a3, c23);
            var w3 = Bf16Bits.Widen512(chunk + 96);
            c30 = Avx512F.FusedMultiplyAdd(w3, a0, c30);
            c31 = Avx512F.FusedMultiplyAdd(w3, a1, c31);
            c32 = Avx512F.FusedMultiplyAdd(w3, a2, c32);
            c33 = Avx512F.FusedMultiplyAdd(w3, a3, c33);
        }

        Write(w, tile, 0, m, y, bias, Vector512.Sum(c00));
        Write(w, tile, 0, m + 1, y, bias, Vector512.Sum(c01));
        Write(w, tile, 0, m + 2, y, bias, Vector512.Sum(c02));
        Write(w, tile, 0, m + 3, y, bias, Vector512.Sum(c03));
        Write(w, tile, 1, m, y, bias, Vector512.Sum(c10));
        Write(w, tile, 1, m + 1, y, bias, Vector512.Sum(c11));
        Write(w, tile, 1, m + 2, y, bias, Vector512.Sum(c12));
        Write(w, tile, 1, m + 3, y, bias, Vector512.Sum(c13));
        Write(w, tile, 2, m, y, bias, Vector512.Sum(c20));
        Write(w, tile, 2, m + 1, y, bias, Vector512.Sum(c21));
        Write(w, tile, 2, m + 2, y, bias, Vector512.Sum(c22));
        Write(w, tile, 2, m + 3, y, bias, Vector512.Sum(c23));
        Write(w, tile, 3, m, y, bias, Vector512.Sum(c30));
        Write(w, tile, 3, m + 1, y, bias, Vector512.Sum(c31));
        Write(w, tile, 3, m + 2, y, bias, Vector512.Sum(c32));
        Write(w, tile, 3, m + 3, y, bias, Vector512.Sum(c33));
    }

    /// <summary>4 weight rows x 2 activation rows in 256-bit registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx2Rows2(Bf16Matrix w, int tile, float* x, int m, float* y, float* bias)
    {
        ushort* q = w.Tile(tile);
        int k = w.PaddedColumns;
        float* x0 = x + ((long)m * k), x1 = x0 + k;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        for (int c = 0; c < k; c += 8)
        {
            ushort* chunk = q + ((c / Bf16Matrix.Chunk) * Bf16Matrix.TileRows * Bf16Matrix.Chunk) + (c % Bf16Matrix.Chunk);
            var a0 = Vector256.Load(x0 + c);
            var a1 = Vector256.Load(x1 + c);
            var w0 = Bf16Bits.Widen256(chunk);
            c00 = Fma.MultiplyAdd(w0, a0, c00);
            c01 = Fma.MultiplyAdd(w0, a1, c01);
            var w1 = Bf16Bits.Widen256(chunk + 32);
            c10 = Fma.MultiplyAdd(w1, a0, c10);
            c11 = Fma.MultiplyAdd(w1, a1, c11);
            var w2 = Bf16Bits.Widen256(chunk + 64);
            c20 = Fma.MultiplyAdd(w2, a0, c20);
            c21 = Fma.MultiplyAdd(w2, a1, c21);
            var w3 = Bf16Bits.Widen256(chunk + 96);
            c30 = Fma.MultiplyAdd(w3, a0, c30);
            c31 = Fma.MultiplyAdd(w3, a1, c31);
        }

        Write(w, tile, 0, m, y, bias, Vector256.Sum(c00));
        Write(w, tile, 0, m + 1, y, bias, Vector256.Sum(c01));
        Write(w, tile, 1, m, y, bias, Vector256.Sum(c10));
        Write(w, tile, 1, m + 1, y, bias, Vector256.Sum(c11));
        Write(w, tile, 2, m, y, bias, Vector256.Sum(c20));
        Write(w, tile, 2, m + 1, y, bias, Vector256.Sum(c21));
        Write(w, tile, 3, m, y, bias, Vector256.Sum(c30));
        Write(w, tile, 3, m + 1, y, bias, Vector256.Sum(c31));
    }

    /// <summary>4 weight rows x 1 activation row: decode, and the rows a batch leaves over.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Row(Bf16Matrix w, int tile, float* x, int m, float* y, float* bias, CpuIsa isa)
    {
        ushort* q = w.Tile(tile);
        int k = w.PaddedColumns;
        float* a = x + ((long)m * k);
        Span<float> sums = stackalloc float[Bf16Matrix.TileRows];
        if (isa == CpuIsa.Avx512)
        {
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (int c = 0; c < k; c += 16)
            {
                ushort* chunk = q + ((c / Bf16Matrix.Chunk) * Bf16Matrix.TileRows * Bf16Matrix.Chunk) + (c % Bf16Matrix.Chunk);
                var v = Vector512.Load(a + c);
                c0 = Avx512F.FusedMultiplyAdd(Bf16Bits.Widen512(chunk), v, c0);
                c1 = Avx512F.FusedMultiplyAdd(Bf16Bits.Widen512(chunk + 32), v, c1);
                c2 = Avx512F.FusedMultiplyAdd(Bf16Bits.Widen512(chunk + 64), v, c2);
                c3 = Avx512F.FusedMultiplyAdd(Bf16Bits.Widen512(chunk + 96), v, c3);
            }

            (sums[0], sums[1], sums[2], sums[3]) = (Vector512.Sum(c0), Vector512.Sum(c1), Vector512.Sum(c2), Vector512.Sum(c3));
        }
        else if (isa == CpuIsa.Avx2)
        {
            Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (int c = 0; c < k; c += 8)
            {
                ushort* chunk = q + ((c / Bf16Matrix.Chunk) * Bf16Matrix.TileRows * Bf16Matrix.Chunk) + (c % Bf16Matrix.Chunk);
                var v = Vector256.Load(a + c);
                c0 = Fma.MultiplyAdd(Bf16Bits.Widen256(chunk), v, c0);
                c1 = Fma.MultiplyAdd(Bf16Bits.Widen256(chunk + 32), v, c1);
                c2 = Fma.MultiplyAdd(Bf16Bits.Widen256(chunk + 64), v, c2);
                c3 = Fma.MultiplyAdd(Bf16Bits.Widen256(chunk + 96), v, c3);
            }

            (sums[0], sums[1], sums[2], sums[3]) = (Vector256.Sum(c0), Vector256.Sum(c1), Vector256.Sum(c2), Vector256.Sum(c3));
        }
        else
        {
            for (int t = 0; t < Bf16Matrix.TileRows; t++)
            {
                float sum = 0;
                for (int c = 0; c < k; c++)
                {
                    ushort bits = q[((c / Bf16Matrix.Chunk) * Bf16Matrix.TileRows * Bf16Matrix.Chunk) + (t * Bf16Matrix.Chunk) + (c % Bf16Matrix.Chunk)];
                    sum += Bf16Bits.ToSingle(bits) * a[c];
                }

                sums[t] = sum;
            }
        }

        for (int t = 0; t < Bf16Matrix.TileRows; t++)
        {
            Write(w, tile, t, m, y, bias, sums[t]);
        }
    }
}
