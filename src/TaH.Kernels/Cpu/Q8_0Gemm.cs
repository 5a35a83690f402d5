using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace TaH.Kernels.Cpu;

/// <summary>
/// The Q8_0 kernels of <see cref="BlockGemm"/>: each block's int8 weights sign-extended to int16
/// and multiplied in pairs (VPMADDWD) with the int16-held activation quants, exact in int32.
/// On AVX-512, 4 activation rows at a time (16 accumulators).
/// </summary>
public static unsafe class Q8_0Gemm
{
    private const int BlockQuantBytes = Q8_0Matrix.TileRows * Q8_0Matrix.BlockSize;

    /// <summary>
    /// <paramref name="y"/> <c>[rows, W.Rows]</c> = <paramref name="x"/> <c>[rows, W.Columns]</c>
    /// times W transposed, plus <paramref name="bias"/> <c>[W.Rows]</c> when given. Both row-major
    /// and contiguous.
    /// </summary>
    public static void Multiply(Q8_0Matrix weights, float* x, int rows, float* y, float* bias = null, CpuIsa? isa = null, CpuWorkerPool? pool = null) =>
        BlockGemm.Multiply<Q8_0Matrix, Kernels>(weights, x, rows, y, bias, isa, pool);

    private readonly struct Kernels : ITileKernel<Q8_0Matrix>
    {
        public static bool ActivationBytes => false;

        public static int WideRows(CpuIsa isa) => isa switch { CpuIsa.Avx512 => 4, CpuIsa.Avx2 => 2, _ => 1 };

        public static delegate*<Q8_0Matrix, int, QuantizedActivations, int, TileOutput, void> Wide(CpuIsa isa) =>
            isa == CpuIsa.Avx512 ? &Avx512Rows4 : &Avx2Rows2;

        public static delegate*<Q8_0Matrix, int, QuantizedActivations, int, TileOutput, void> Row(CpuIsa isa) =>
            isa switch { CpuIsa.Avx512 => &Avx512Row, CpuIsa.Avx2 => &Avx2Row, _ => &ScalarRow };
    }

    /// <summary>4 weight rows x 4 activation rows: 16 accumulators of 16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512Rows4(Q8_0Matrix w, int tile, QuantizedActivations a, int m, TileOutput output)
    {
        sbyte* q = (sbyte*)w.TileQuants(tile);
        ushort* s = w.TileScales(tile);
        int columns = a.Columns, stride = a.RowStride;
        short* x0 = a.Quants + ((long)m * columns), x1 = x0 + columns, x2 = x1 + columns, x3 = x2 + columns;
        float* activationScales = a.BlockScales + m;
        float* table = stackalloc float[16];
        var rowOfLane = BlockGemm.RowOfLane();
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        for (int g = 0; g < w.Blocks / Q8_0Matrix.GroupBlocks; g++)
        {
            // The group's 16 weight scales, lane j*4 + t for block j and weight row t.
            var weightScales = HalfBits.ToSingle(Avx512F.ConvertToVector512UInt32(Vector256.Load(s + (g * 16))));
            for (int j = 0; j < Q8_0Matrix.GroupBlocks; j++)
            {
                int b = (g * Q8_0Matrix.GroupBlocks) + j;
                // d_w d_x of every (weight row t, activation row r) pair, lane t*4 + r.
                var dw = Avx512F.PermuteVar16x32(weightScales, rowOfLane + Vector512.Create(j * 4));
                var dx = Avx512F.BroadcastVector128ToVector512(activationScales + ((long)b * stride));
                (dw * dx).Store(table);

                sbyte* qb = q + ((long)b * BlockQuantBytes);
                var w0 = Avx512BW.ConvertToVector512Int16(Vector256.Load(qb));
                var w1 = Avx512BW.ConvertToVector512Int16(Vector256.Load(qb + 32));
                var w2 = Avx512BW.ConvertToVector512Int16(Vector256.Load(qb + 64));
                var w3 = Avx512BW.ConvertToVector512Int16(Vector256.Load(qb + 96));
                int k = b * Q8_0Matrix.BlockSize;
                var a0 = Vector512.Load(x0 + k);
                var a1 = Vector512.Load(x1 + k);
                var a2 = Vector512.Load(x2 + k);
                var a3 = Vector512.Load(x3 + k);
                c00 = Step(c00, w0, a0, table[0]);
                c01 = Step(c01, w0, a1, table[1]);
                c02 = Step(c02, w0, a2, table[2]);
                c03 = Step(c03, w0, a3, table[3]);
                c10 = Step(c10, w1, a0, table[4]);
                c11 = Step(c11, w1, a1, table[5]);
                c12 = Step(c12, w1, a2, table[6]);
                c13 = Step(c13, w1, a3, table[7]);
                c20 = Step(c20, w2, a0, table[8]);
                c21 = Step(c21, w2, a1, table[9]);
                c22 = Step(c22, w2, a2, table[10]);
                c23 = Step(c23, w2, a3, table[11]);
                c30 = Step(c30, w3, a0, table[12]);
                c31 = Step(c31, w3, a1, table[13]);
                c32 = Step(c32, w3, a2, table[14]);
                c33 = Step(c33, w3, a3, table[15]);
            }
        }

        output.Write(m, BlockGemm.Sums(c00, c10, c20, c30));
        output.Write(m + 1, BlockGemm.Sums(c01, c11, c21, c31));
        output.Write(m + 2, BlockGemm.Sums(c02, c12, c22, c32));
        output.Write(m + 3, BlockGemm.Sums(c03, c13, c23, c33));
    }

    /// <summary>4 weight rows x 1 activation row (decode, and what a batch leaves over).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512Row(Q8_0Matrix w, int tile, QuantizedActivations a, int m, TileOutput output)
    {
        sbyte* q = (sbyte*)w.TileQuants(tile);
        ushort* s = w.TileScales(tile);
        short* x = a.Quants + ((long)m * a.Columns);
        float* activationScales = a.RowScales + ((long)m * a.Blocks);
        float* table = stackalloc float[16];
        var rowOfLane = BlockGemm.RowOfLane();
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int g = 0; g < w.Blocks / Q8_0Matrix.GroupBlocks; g++)
        {
            // Lane j*4 + t: d_w of block j, row t, times d_x of block j.
            var dw = HalfBits.ToSingle(Avx512F.ConvertToVector512UInt32(Vector256.Load(s + (g * 16))));
            var dx = Avx512F.PermuteVar16x32(Avx512F.BroadcastVector128ToVector512(activationScales + (g * Q8_0Matrix.GroupBlocks)), rowOfLane);
            (dw * dx).Store(table);
            // The group's 4 blocks written out: a loop over them cost a tenth more instructions.
            sbyte* qg = q + ((long)g * Q8_0Matrix.GroupBlocks * BlockQuantBytes);
            short* xg = x + (g * Q8_0Matrix.GroupBlocks * Q8_0Matrix.BlockSize);
            var v = Vector512.Load(xg);
            c0 = Step(c0, Widen(qg), v, table[0]);
            c1 = Step(c1, Widen(qg + 32), v, table[1]);
            c2 = Step(c2, Widen(qg + 64), v, table[2]);
            c3 = Step(c3, Widen(qg + 96), v, table[3]);
            v = Vector512.Load(xg + 32);
            c0 = Step(c0, Widen(qg + 128), v, table[4]);
            c1 = Step(c1, Widen(qg + 160), v, table[5]);
            c2 = Step(c2, Widen(qg + 192), v, table[6]);
            c3 = Step(c3, Widen(qg + 224), v, table[7]);
            v = Vector512.Load(xg + 64);
            c0 = Step(c0, Widen(qg + 256), v, table[8]);
            c1 = Step(c1, Widen(qg + 288), v, table[9]);
            c2 = Step(c2, Widen(qg + 320), v, table[10]);
            c3 = Step(c3, Widen(qg + 352), v, table[11]);
            v = Vector512.Load(xg + 96);
            c0 = Step(c0, Widen(qg + 384), v, table[12]);
            c1 = Step(c1, Widen(qg + 416), v, table[13]);
            c2 = Step(c2, Widen(qg + 448), v, table[14]);
            c3 = Step(c3, Widen(qg + 480), v, table[15]);
        }

        output.Write(m, BlockGemm.Sums(c0, c1, c2, c3));
    }

    /// <summary>One weight row's 32 int8 quants of a block, sign-extended.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Widen(sbyte* quants) => Avx512BW.ConvertToVector512Int16(Vector256.Load(quants));

    /// <summary>One block of one (weight row, activation row) pair: 16 int32 pair sums, scaled and accumulated.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Step(Vector512<float> c, Vector512<short> w, Vector512<short> x, float scale) =>
        Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w, x)), Vector512.Create(scale), c);

    /// <summary>4 weight rows x 2 activation rows in 256-bit registers (16 of them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx2Rows2(Q8_0Matrix w, int tile, QuantizedActivations a, int m, TileOutput output)
    {
        sbyte* q = (sbyte*)w.TileQuants(tile);
        ushort* s = w.TileScales(tile);
        short* x0 = a.Quants + ((long)m * a.Columns), x1 = x0 + a.Columns;
        float* dx0 = a.RowScales + ((long)m * a.Blocks), dx1 = dx0 + a.Blocks;
        float* table = stackalloc float[32];
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        for (int g = 0; g < w.Blocks / Q8_0Matrix.GroupBlocks; g++)
        {
            BlockGemm.Avx2Scales(s + (g * 16), dx0 + (g * Q8_0Matrix.GroupBlocks), table);
            BlockGemm.Avx2Scales(s + (g * 16), dx1 + (g * Q8_0Matrix.GroupBlocks), table + 16);
            for (int j = 0; j < Q8_0Matrix.GroupBlocks; j++)
            {
                int b = (g * Q8_0Matrix.GroupBlocks) + j, k = b * Q8_0Matrix.BlockSize;
                sbyte* qb = q + ((long)b * BlockQuantBytes);
                var a0 = Vector256.Load(x0 + k);
                var a0h = Vector256.Load(x0 + k + 16);
                var a1 = Vector256.Load(x1 + k);
                var a1h = Vector256.Load(x1 + k + 16);
                var w0 = Avx2.ConvertToVector256Int16(Vector128.Load(qb));
                var w0h = Avx2.ConvertToVector256Int16(Vector128.Load(qb + 16));
                c00 = Step(c00, w0, w0h, a0, a0h, table[j * 4]);
                c01 = Step(c01, w0, w0h, a1, a1h, table[16 + (j * 4)]);
                var w1 = Avx2.ConvertToVector256Int16(Vector128.Load(qb + 32));
                var w1h = Avx2.ConvertToVector256Int16(Vector128.Load(qb + 48));
                c10 = Step(c10, w1, w1h, a0, a0h, table[(j * 4) + 1]);
                c11 = Step(c11, w1, w1h, a1, a1h, table[16 + (j * 4) + 1]);
                var w2 = Avx2.ConvertToVector256Int16(Vector128.Load(qb + 64));
                var w2h = Avx2.ConvertToVector256Int16(Vector128.Load(qb + 80));
                c20 = Step(c20, w2, w2h, a0, a0h, table[(j * 4) + 2]);
                c21 = Step(c21, w2, w2h, a1, a1h, table[16 + (j * 4) + 2]);
                var w3 = Avx2.ConvertToVector256Int16(Vector128.Load(qb + 96));
                var w3h = Avx2.ConvertToVector256Int16(Vector128.Load(qb + 112));
                c30 = Step(c30, w3, w3h, a0, a0h, table[(j * 4) + 3]);
                c31 = Step(c31, w3, w3h, a1, a1h, table[16 + (j * 4) + 3]);
            }
        }

        output.Write(m, BlockGemm.Sums(c00, c10, c20, c30));
        output.Write(m + 1, BlockGemm.Sums(c01, c11, c21, c31));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx2Row(Q8_0Matrix w, int tile, QuantizedActivations a, int m, TileOutput output)
    {
        sbyte* q = (sbyte*)w.TileQuants(tile);
        ushort* s = w.TileScales(tile);
        short* x = a.Quants + ((long)m * a.Columns);
        float* dx = a.RowScales + ((long)m * a.Blocks);
        float* table = stackalloc float[16];
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int g = 0; g < w.Blocks / Q8_0Matrix.GroupBlocks; g++)
        {
            BlockGemm.Avx2Scales(s + (g * 16), dx + (g * Q8_0Matrix.GroupBlocks), table);
            for (int j = 0; j < Q8_0Matrix.GroupBlocks; j++)
            {
                int b = (g * Q8_0Matrix.GroupBlocks) + j, k = b * Q8_0Matrix.BlockSize;
                sbyte* qb = q + ((long)b * BlockQuantBytes);
                var v = Vector256.Load(x + k);
                var vh = Vector256.Load(x + k + 16);
                c0 = Step(c0, Avx2.ConvertToVector256Int16(Vector128.Load(qb)), Avx2.ConvertToVector256Int16(Vector128.Load(qb + 16)), v, vh, table[j * 4]);
                c1 = Step(c1, Avx2.ConvertToVector256Int16(Vector128.Load(qb + 32)), Avx2.ConvertToVector256Int16(Vector128.Load(qb + 48)), v, vh, table[(j * 4) + 1]);
                c2 = Step(c2, Avx2.ConvertToVector256Int16(Vector128.Load(qb + 64)), Avx2.ConvertToVector256Int16(Vector128.Load(qb + 80)), v, vh, table[(j * 4) + 2]);
                c3 = Step(c3, Avx2.ConvertToVector256Int16(Vector128.Load(qb + 96)), Avx2.ConvertToVector256Int16(Vector128.Load(qb + 112)), v, vh, table[(j * 4) + 3]);
            }
        }

        output.Write(m, BlockGemm.Sums(c0, c1, c2, c3));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(Vector256<float> c, Vector256<short> w, Vector256<short> wh, Vector256<short> x, Vector256<short> xh, float scale) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.Add(Avx2.MultiplyAddAdjacent(w, x), Avx2.MultiplyAddAdjacent(wh, xh))), Vector256.Create(scale), c);

    private static void ScalarRow(Q8_0Matrix w, int tile, QuantizedActivations a, int m, TileOutput output)
    {
        sbyte* q = (sbyte*)w.TileQuants(tile);
        ushort* s = w.TileScales(tile);
        short* x = a.Quants + ((long)m * a.Columns);
        float* dx = a.RowScales + ((long)m * a.Blocks);
        for (int t = 0; t < Q8_0Matrix.TileRows; t++)
        {
            float sum = 0;
            for (int b = 0; b < w.Blocks; b++)
            {
                sbyte* qb = q + ((long)b * BlockQuantBytes) + (t * Q8_0Matrix.BlockSize);
                short* xb = x + (b * Q8_0Matrix.BlockSize);
                int dot = 0;
                for (int i = 0; i < Q8_0Matrix.BlockSize; i++)
                {
                    dot += qb[i] * xb[i];
                }

                float dw = (float)BitConverter.UInt16BitsToHalf(s[(b * Q8_0Matrix.TileRows) + t]);
                sum += dot * (dw * dx[b]);
            }

            output.Write(m, t, sum);
        }
    }
}
