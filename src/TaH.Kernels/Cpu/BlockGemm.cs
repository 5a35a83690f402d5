using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace TaH.Kernels.Cpu;

/// <summary>
/// One block format's kernels, per path: each takes one tile of 4 weight rows against activation
/// rows from <c>m</c> on (<c>(w, tile, a, m, output)</c>), one row or <see cref="WideRows"/> of them.
/// </summary>
internal unsafe interface ITileKernel<TMatrix>
    where TMatrix : BlockMatrix
{
    /// <summary>Whether the kernels read the activations as int8 with block sums (<see cref="QuantizedActivations.Bytes"/>).</summary>
    static abstract bool ActivationBytes { get; }

    /// <summary>Activation rows the path's <see cref="Wide"/> kernel takes at once (1: it has none).</summary>
    static abstract int WideRows(CpuIsa isa);

    static abstract delegate*<TMatrix, int, QuantizedActivations, int, TileOutput, void> Wide(CpuIsa isa);

    static abstract delegate*<TMatrix, int, QuantizedActivations, int, TileOutput, void> Row(CpuIsa isa);
}

/// <summary>
/// <c>y = x W^T (+ bias)</c> for a <see cref="BlockMatrix"/> W and fp32 activation rows x, as
/// llama.cpp computes its block formats: the activations are quantised to int8 per block of 32
/// too, each block's dot product is exact in integers, then scaled by d_w d_x and summed in fp32.
/// One driver serves decode and prefill: each tile of 4 weight rows is read once for every
/// activation row of a pass (128 rows), so a batch costs little more weight traffic than one row.
/// Tiles are shared out over a <see cref="CpuWorkerPool"/>; outputs are written in place.
/// </summary>
internal static unsafe class BlockGemm
{
    /// <summary>Weight bytes times rows below which a call runs on the calling thread alone.</summary>
    internal const long InlineBytes = 1 << 16;

    /// <summary>Weight bytes below which the tiles are split evenly, one range per thread.</summary>
    internal const long EvenSplitBytes = 4 << 20;

    /// <summary>Activation rows quantised and multiplied per pass over the weights.</summary>
    internal const int PassRows = 128;

    private static readonly CpuWorkerPool Inline = new(1);

    public static void Multiply<TMatrix, TKernel>(TMatrix weights, float* x, int rows, float* y, float* bias, CpuIsa? isa, CpuWorkerPool? pool)
        where TMatrix : BlockMatrix
        where TKernel : ITileKernel<TMatrix>
    {
        var path = isa ?? CpuIsas.Best;
        if (!CpuIsas.IsSupported(path))
        {
            throw new PlatformNotSupportedException($"this CPU has no {path} path");
        }

        long started = KernelClock.Start();
        // By default, work too small to share (the decider's smallest layers) stays on the calling thread.
        pool ??= weights.Bytes * (long)rows < InlineBytes ? Inline : CpuWorkerPool.Shared;
        var activations = QuantizedActivations.ForThread;
        var job = Job<TMatrix, TKernel>.ForThread;
        // A small matrix goes in one contiguous range per thread: in 16-tile items the threads'
        // reads interleaved, and the decider's cold 0.1-2.8 MB layers took a tenth longer. Larger
        // ones keep many items, so a descheduled thread's share goes to the others.
        int tilesPerItem = weights.Bytes < EvenSplitBytes
            ? pool.EvenShare(weights.Tiles)
            : Math.Clamp(weights.Tiles / (pool.Threads * 8), 1, 16);
        for (int start = 0; start < rows; start += PassRows)
        {
            int m = Math.Min(PassRows, rows - start);
            activations.Quantize(x + ((long)start * weights.Columns), m, weights.Columns, weights.Columns, weights.PaddedColumns, pool, TKernel.ActivationBytes);
            job.Set(weights, activations, y + ((long)start * weights.Rows), bias, path, tilesPerItem);
            pool.Run(job, (weights.Tiles + tilesPerItem - 1) / tilesPerItem);
        }

        job.Clear();
        KernelClock.Stop(started);
    }

    /// <summary>
    /// Lane i holds i / 4. A constant built in the kernel: a static field's class-initialisation
    /// check in the loop would make the JIT keep the accumulators in memory.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> RowOfLane() => Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);

    /// <summary>d_w d_x for a group's 4 blocks x 4 weight rows (lane j*4 + t) and one activation row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Avx2Scales(ushort* weightScales, float* activationScales, float* table)
    {
        var dw = Vector128.Load(weightScales);
        var dwh = Vector128.Load(weightScales + 8);
        var lo = HalfBits.ToSingle(Avx2.ConvertToVector256Int32(dw).AsUInt32());
        var hi = HalfBits.ToSingle(Avx2.ConvertToVector256Int32(dwh).AsUInt32());
        var dx = Vector256.Create(
            activationScales[0], activationScales[0], activationScales[0], activationScales[0],
            activationScales[1], activationScales[1], activationScales[1], activationScales[1]);
        var dxh = Vector256.Create(
            activationScales[2], activationScales[2], activationScales[2], activationScales[2],
            activationScales[3], activationScales[3], activationScales[3], activationScales[3]);
        (lo * dx).Store(table);
        (hi * dxh).Store(table + 8);
    }

    /// <summary>
    /// The lane sums of four accumulators, one per weight row of a tile: transposed and added
    /// pairwise, where four separate reductions cost a tile of a 512-column layer a tenth of its
    /// instructions.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Sums(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        // Per 128-bit chunk: [a0+a2, b0+b2, a1+a3, b1+b3], the same for c and d, then [a, b, c, d].
        var ab = Avx512F.UnpackLow(a, b) + Avx512F.UnpackHigh(a, b);
        var cd = Avx512F.UnpackLow(c, d) + Avx512F.UnpackHigh(c, d);
        var chunks = Avx512F.Shuffle(ab, cd, 0b01_00_01_00) + Avx512F.Shuffle(ab, cd, 0b11_10_11_10);
        var half = chunks.GetLower() + chunks.GetUpper();
        return half.GetLower() + half.GetUpper();
    }

    /// <summary><see cref="Sums(Vector512{float}, Vector512{float}, Vector512{float}, Vector512{float})"/> at 256 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Sums(Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d)
    {
        var ab = Avx.HorizontalAdd(a, b);
        var cd = Avx.HorizontalAdd(c, d);
        var both = Avx.HorizontalAdd(ab, cd);
        return both.GetLower() + both.GetUpper();
    }

    /// <summary>The tiles of one work item, over every activation row of the pass.</summary>
    private sealed class Job<TMatrix, TKernel> : PoolJob
        where TMatrix : BlockMatrix
        where TKernel : ITileKernel<TMatrix>
    {
        [ThreadStatic]
        private static Job<TMatrix, TKernel>? _forThread;

        private TMatrix? _weights;
        private QuantizedActivations? _activations;
        private float* _y;
        private float* _bias;
        private CpuIsa _isa;
        private int _tilesPerItem;

        public static Job<TMatrix, TKernel> ForThread => _forThread ??= new();

        public void Set(TMatrix weights, QuantizedActivations activations, float* y, float* bias, CpuIsa isa, int tilesPerItem)
        {
            _weights = weights;
            _activations = activations;
            _y = y;
            _bias = bias;
            _isa = isa;
            _tilesPerItem = tilesPerItem;
        }

        public void Clear()
        {
            _weights = null;
            _activations = null;
        }

        public override void Execute(int item)
        {
            var w = _weights!;
            var a = _activations!;
            int end = Math.Min(w.Tiles, (item + 1) * _tilesPerItem), wideRows = TKernel.WideRows(_isa);
            var wideKernel = TKernel.Wide(_isa);
            var rowKernel = TKernel.Row(_isa);
            for (int tile = item * _tilesPerItem; tile < end; tile++)
            {
                var output = new TileOutput(_y, w.Rows, tile, _bias);
                int m = 0;
                for (; wideRows > 1 && m + wideRows <= a.Rows; m += wideRows)
                {
                    wideKernel(w, tile, a, m, output);
                }

                for (; m < a.Rows; m++)
                {
                    rowKernel(w, tile, a, m, output);
                }
            }
        }
    }
}

/// <summary>Where a tile's results go: 4 output columns of each activation row, clipped to the real rows of W.</summary>
internal readonly unsafe struct TileOutput(float* y, int stride, int tile, float* bias)
{
    private readonly int _first = tile * BlockMatrix.TileRows;

    public void Write(int row, int lane, float sum)
    {
        int n = _first + lane;
        if (n < stride)
        {
            y[((long)row * stride) + n] = bias is null ? sum : sum + bias[n];
        }
    }

    /// <summary>The tile's 4 sums of one activation row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Write(int row, Vector128<float> sums)
    {
        if (_first + 4 <= stride)
        {
            float* target = y + ((long)row * stride) + _first;
            (bias is null ? sums : sums + Vector128.Load(bias + _first)).Store(target);
            return;
        }

        for (int lane = 0; lane < 4; lane++)
        {
            Write(row, lane, sums[lane]);
        }
    }
}
