using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace TaH.Kernels.Cpu;

/// <summary>
/// The Q4_0 kernels of <see cref="BlockGemm"/>. A tile's block is 64 bytes, 16 per weight row: the
/// nibbles are split with a mask and a shift and multiplied, unsigned, by the int8 activations in
/// pairs (VPMADDUBSW: at most 2 * 15 * 127 per pair, so nothing saturates), then summed to int32;
/// the nibbles' offset of 8 comes off once per block as 8 times the block's activation sum. That
/// is 128 weights a step in one 512-bit register, where Q8_0 needs four. On AVX-512, 1 or 4
/// activation rows at a time; on AVX2 one.
/// </summary>
public static unsafe class Q4_0Gemm
{
    private const int TileBlockBytes = Q4_0Matrix.TileRows * Q4_0Matrix.BlockSize / 2;

    /// <summary>
    /// <paramref name="y"/> <c>[rows, W.Rows]</c> = <paramref name="x"/> <c>[rows, W.Columns]</c>
    /// times W transposed, plus <paramref name="bias"/> <c>[W.Rows]</c> when given. Both row-major
    /// and contiguous.
    /// </summary>
    public static void Multiply(Q4_0Matrix weights, float* x, int rows, float* y, float* bias = null, CpuIsa? isa = null, CpuWorkerPool? pool = null) =>
        BlockGemm.Multiply<Q4_0Matrix, Kernels>(weights, x, rows, y, bias, isa, pool);

    private readonly struct Kernels : ITileKernel<Q4_0Matrix>
    {
        public static bool ActivationBytes => true;

        public static int WideRows(CpuIsa isa) => isa == CpuIsa.Avx512 ? 4 : 1;

        public static delegate*<Q4_0Matrix, int, QuantizedActivations, int, TileOutput, void> Wide(CpuIsa isa) => &Avx512Rows4;

        public static delegate*<Q4_0Matrix, int, QuantizedActivations, int, TileOutput, void> Row(CpuIsa isa) =>
            isa switch { CpuIsa.Avx512 => &Avx512Row, CpuIsa.Avx2 => &Avx2Row, _ => &ScalarRow };
    }

    /// <summary>4 weight rows x 1 activation row: lanes 4t..4t+3 of the accumulators belong to weight row t.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512Row(Q4_0Matrix w, int tile, QuantizedActivations a, int m, TileOutput output)
    {
        byte* q = w.TileQuants(tile);
        ushort* s = w.TileScales(tile);
        sbyte* x = a.Bytes + ((long)m * a.Columns);
        float* dx = a.RowScales + ((long)m * a.Blocks);
        int* sx = a.Sums + ((long)m * a.Blocks);
        var rowOfLane = BlockGemm.RowOfLane();
        Vector512<float> c0 = default, c1 = default;
        for (int g = 0; g < w.Blocks / Q4_0Matrix.GroupBlocks; g++)
        {
            // Lane j*4 + t: d_w of block j, row t, times d_x of block j.
            var dw = HalfBits.ToSingle(Avx512F.ConvertToVector512UInt32(Vector256.Load(s + (g * 16))));
            var d = dw * Avx512F.PermuteVar16x32(Avx512F.BroadcastVector128ToVector512(dx + (g * Q4_0Matrix.GroupBlocks)), rowOfLane);
            int b = g * Q4_0Matrix.GroupBlocks;
            var (lo, hi) = Avx512Nibbles(q + ((long)b * TileBlockBytes));
            c0 = Avx512Step(c0, lo, hi, x + (b * Q4_0Matrix.BlockSize), sx[b], Avx512F.PermuteVar16x32(d, rowOfLane));
            (lo, hi) = Avx512Nibbles(q + ((long)(b + 1) * TileBlockBytes));
            c1 = Avx512Step(c1, lo, hi, x + ((b + 1) * Q4_0Matrix.BlockSize), sx[b + 1], Avx512F.PermuteVar16x32(d, rowOfLane + Vector512.Create(4)));
            (lo, hi) = Avx512Nibbles(q + ((long)(b + 2) * TileBlockBytes));
            c0 = Avx512Step(c0, lo, hi, x + ((b + 2) * Q4_0Matrix.BlockSize), sx[b + 2], Avx512F.PermuteVar16x32(d, rowOfLane + Vector512.Create(8)));
            (lo, hi) = Avx512Nibbles(q + ((long)(b + 3) * TileBlockBytes));
            c1 = Avx512Step(c1, lo, hi, x + ((b + 3) * Q4_0Matrix.BlockSize), sx[b + 3], Avx512F.PermuteVar16x32(d, rowOfLane + Vector512.Create(12)));
        }

        output.Write(m, Avx512RowSums(c0 + c1));
    }

    /// <summary>4 weight rows x 4 activation rows: each block's nibbles split once for all four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512Rows4(Q4_0Matrix w, int tile, QuantizedActivations a, int m, TileOutput output)
    {
        byte* q = w.TileQuants(tile);
        ushort* s = w.TileScales(tile);
        long columns = a.Columns;
        int blocks = a.Blocks;
        sbyte* x0 = a.Bytes + (m * columns), x1 = x0 + columns, x2 = x1 + columns, x3 = x2 + columns;
        float* dx0 = a.RowScales + ((long)m * blocks), dx1 = dx0 + blocks, dx2 = dx1 + blocks, dx3 = dx2 + blocks;
        int* sx0 = a.Sums + ((long)m * blocks), sx1 = sx0 + blocks, sx2 = sx1 + blocks, sx3 = sx2 + blocks;
        var rowOfLane = BlockGemm.RowOfLane();
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int g = 0; g < w.Blocks / Q4_0Matrix.GroupBlocks; g++)
        {
            var dw = HalfBits.ToSingle(Avx512F.ConvertToVector512UInt32(Vector256.Load(s + (g * 16))));
            int first = g * Q4_0Matrix.GroupBlocks;
            var d0 = dw * Avx512F.PermuteVar16x32(Avx512F.BroadcastVector128ToVector512(dx0 + first), rowOfLane);
            var d1 = dw * Avx512F.PermuteVar16x32(Avx512F.BroadcastVector128ToVector512(dx1 + first), rowOfLane);
            var d2 = dw * Avx512F.PermuteVar16x32(Avx512F.BroadcastVector128ToVector512(dx2 + first), rowOfLane);
            var d3 = dw * Avx512F.PermuteVar16x32(Avx512F.BroadcastVector128ToVector512(dx3 + first), rowOfLane);
            for (int j = 0; j < Q4_0Matrix.GroupBlocks; j++)
            {
                int b = first + j, k = b * Q4_0Matrix.BlockSize;
                var (lo, hi) = Avx512Nibbles(q + ((long)b * TileBlockBytes));
                var lanes = rowOfLane + Vector512.Create(j * 4);
                c0 = Avx512Step(c0, lo, hi, x0 + k, sx0[b], Avx512F.PermuteVar16x32(d0, lanes));
                c1 = Avx512Step(c1, lo, hi, x1 + k, sx1[b], Avx512F.PermuteVar16x32(d1, lanes));
                c2 = Avx512Step(c2, lo, hi, x2 + k, sx2[b], Avx512F.PermuteVar16x32(d2, lanes));
                c3 = Avx512Step(c3, lo, hi, x3 + k, sx3[b], Avx512F.PermuteVar16x32(d3, lanes));
            }
        }

        output.Write(m, Avx512RowSums(c0));
        output.Write(m + 1, Avx512RowSums(c1));
        output.Write(m + 2, Avx512RowSums(c2));
        output.Write(m + 3, Avx512RowSums(c3));
    }

    /// <summary>A tile's block, byte 16t + i of each: entry i of row t (low nibbles) and entry i + 16 (high).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<byte> Low, Vector512<byte> High) Avx512Nibbles(byte* block)
    {
        var packed = Vector512.Load(block);
        var mask = Vector512.Create((byte)0x0F);
        return (packed & mask, Avx512BW.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask);
    }

    /// <summary>
    /// One block of 4 weight rows and one activation row: 16 int32 lanes, 4 per weight row, less
    /// twice the block's activation sum each (8 per row), scaled lane by lane and accumulated.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512Step(Vector512<float> c, Vector512<byte> lo, Vector512<byte> hi, sbyte* x, int sum, Vector512<float> scale)
    {
        var pairs = Avx512BW.MultiplyAddAdjacent(lo, Avx512F.BroadcastVector128ToVector512((int*)x).AsSByte()) + Avx512BW.MultiplyAddAdjacent(hi, Avx512F.BroadcastVector128ToVector512((int*)(x + 16)).AsSByte());
        var dots = Avx512BW.MultiplyAddAdjacent(pairs, Vector512.Create((short)1)) - Vector512.Create(2 * sum);
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(dots), scale, c);
    }

    /// <summary>The sums of lanes 4t..4t+3, t = 0..3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Avx512RowSums(Vector512<float> c)
    {
        c += Avx512F.Permute4x32(c, 0b10_11_00_01);
        c += Avx512F.Permute4x32(c, 0b01_00_11_10);
        return Avx512F.PermuteVar16x32(c, Vector512.Create(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).GetLower().GetLower();
    }

    /// <summary>4 weight rows x 1 activation row in 256-bit registers, two weight rows each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx2Row(Q4_0Matrix w, int tile, QuantizedActivations a, int m, TileOutput output)
    {
        byte* q = w.TileQuants(tile);
        ushort* s = w.TileScales(tile);
        sbyte* x = a.Bytes + ((long)m * a.Columns);
        float* dx = a.RowScales + ((long)m * a.Blocks);
        int* sx = a.Sums + ((long)m * a.Blocks);
        float* table = stackalloc float[16];
        // Lane l of block j's pair p (rows 2p, 2p + 1) reads table entry j*4 + 2p + l/4: within one half of the table.
        var pair0 = Vector256.Create(0, 0, 0, 0, 1, 1, 1, 1);
        var pair1 = Vector256.Create(2, 2, 2, 2, 3, 3, 3, 3);
        var pair2 = Vector256.Create(4, 4, 4, 4, 5, 5, 5, 5);
        var pair3 = Vector256.Create(6, 6, 6, 6, 7, 7, 7, 7);
        Vector256<float> c0 = default, c1 = default;
        for (int g = 0; g < w.Blocks / Q4_0Matrix.GroupBlocks; g++)
        {
            BlockGemm.Avx2Scales(s + (g * 16), dx + (g * Q4_0Matrix.GroupBlocks), table);
            var early = Vector256.Load(table);
            var late = Vector256.Load(table + 8);
            int b = g * Q4_0Matrix.GroupBlocks;
            (c0, c1) = Avx2Step(c0, c1, q + ((long)b * TileBlockBytes), x + (b * Q4_0Matrix.BlockSize), sx[b], Avx2.PermuteVar8x32(early, pair0), Avx2.PermuteVar8x32(early, pair1));
            (c0, c1) = Avx2Step(c0, c1, q + ((long)(b + 1) * TileBlockBytes), x + ((b + 1) * Q4_0Matrix.BlockSize), sx[b + 1], Avx2.PermuteVar8x32(early, pair2), Avx2.PermuteVar8x32(early, pair3));
            (c0, c1) = Avx2Step(c0, c1, q + ((long)(b + 2) * TileBlockBytes), x + ((b + 2) * Q4_0Matrix.BlockSize), sx[b + 2], Avx2.PermuteVar8x32(late, pair0), Avx2.PermuteVar8x32(late, pair1));
            (c0, c1) = Avx2Step(c0, c1, q + ((long)(b + 3) * TileBlockBytes), x + ((b + 3) * Q4_0Matrix.BlockSize), sx[b + 3], Avx2.PermuteVar8x32(late, pair2), Avx2.PermuteVar8x32(late, pair3));
        }

        // [r0, r2, r0, r2 | r1, r3, r1, r3], then interleaved.
        var h = Avx.HorizontalAdd(c0, c1);
        h = Avx.HorizontalAdd(h, h);
        output.Write(m, Sse.UnpackLow(h.GetLower(), h.GetUpper()));
    }

    /// <summary>One block: rows 0 and 1 into <paramref name="c0"/> (lanes 0-3, 4-7), rows 2 and 3 into <paramref name="c1"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float>, Vector256<float>) Avx2Step(Vector256<float> c0, Vector256<float> c1, byte* block, sbyte* x, int sum, Vector256<float> scale01, Vector256<float> scale23)
    {
        var mask = Vector256.Create((byte)0x0F);
        var xl = Avx2.BroadcastVector128ToVector256(x);
        var xh = Avx2.BroadcastVector128ToVector256(x + 16);
        var offset = Vector256.Create(2 * sum);
        var ones = Vector256.Create((short)1);
        var p01 = Vector256.Load(block);
        var p23 = Vector256.Load(block + 32);
        var d01 = Avx2.MultiplyAddAdjacent(
            Avx2.MultiplyAddAdjacent(p01 & mask, xl) + Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(p01.AsUInt16(), 4).AsByte() & mask, xh), ones) - offset;
        var d23 = Avx2.MultiplyAddAdjacent(
            Avx2.MultiplyAddAdjacent(p23 & mask, xl) + Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(p23.AsUInt16(), 4).AsByte() & mask, xh), ones) - offset;
        return (Fma.MultiplyAdd(Avx.ConvertToVector256Single(d01), scale01, c0), Fma.MultiplyAdd(Avx.ConvertToVector256Single(d23), scale23, c1));
    }

    private static void ScalarRow(Q4_0Matrix w, int tile, QuantizedActivations a, int m, TileOutput output)
    {
        byte* q = w.TileQuants(tile);
        ushort* s = w.TileScales(tile);
        sbyte* x = a.Bytes + ((long)m * a.Columns);
        float* dx = a.RowScales + ((long)m * a.Blocks);
        for (int t = 0; t < Q4_0Matrix.TileRows; t++)
        {
            float sum = 0;
            for (int b = 0; b < w.Blocks; b++)
            {
                byte* qb = q + ((long)b * TileBlockBytes) + (t * Q4_0Matrix.BlockSize / 2);
                sbyte* xb = x + (b * Q4_0Matrix.BlockSize);
                int dot = 0;
                for (int i = 0; i < Q4_0Matrix.BlockSize / 2; i++)
                {
                    dot += (((qb[i] & 0xF) - 8) * xb[i]) + (((qb[i] >> 4) - 8) * xb[i + 16]);
                }

                float dw = (float)BitConverter.UInt16BitsToHalf(s[(b * Q4_0Matrix.TileRows) + t]);
                sum += dot * (dw * dx[b]);
            }

            output.Write(m, t, sum);
        }
    }
}
