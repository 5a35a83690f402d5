using TaH.Kernels.Cpu;

namespace TaH.Kernels.Tests.Cpu;

/// <summary>
/// The Q8_0 and Q4_0 formats and kernels against plain computations of their definitions.
/// Tolerances come from the formats' rounding, never from the vector width: see
/// <see cref="DotTolerance"/>.
/// </summary>
public unsafe class BlockFormatTests
{
    /// <summary>The block formats, by GGUF's names.</summary>
    public enum Format
    {
        Q8_0,
        Q4_0,
    }

    private static BlockMatrix Create(Format format, int rows, int columns) =>
        format == Format.Q8_0 ? new Q8_0Matrix(rows, columns) : new Q4_0Matrix(rows, columns);

    private const double Unit = 1.0 / (1 << 24); // fp32 unit roundoff

    public static TheoryData<CpuIsa> Paths() => [.. CpuIsas.Supported];

    /// <summary>Random weights whose blocks span four orders of magnitude, some blocks all zero.</summary>
    private static float[] RandomWeights(Random random, int rows, int columns)
    {
        var w = new float[rows * columns];
        for (int r = 0; r < rows; r++)
        {
            for (int b = 0; b * 32 < columns; b++)
            {
                double magnitude = random.Next(7) == 0 ? 0 : Math.Pow(10, -2 + (random.NextDouble() * 4));
                for (int i = b * 32; i < Math.Min(columns, (b + 1) * 32); i++)
                {
                    w[(r * columns) + i] = (float)((random.NextDouble() * 2 - 1) * magnitude);
                }
            }
        }

        return w;
    }

    [Theory]
    [InlineData(1, 32)]
    [InlineData(5, 100)]
    [InlineData(9, 1000)]
    public void DequantisedWeightsAreWithinHalfAScaleAndTheMaximumMapsTo127(int rows, int columns)
    {
        var random = new Random(rows * 1000 + columns);
        var w = RandomWeights(random, rows, columns);
        using var m = new Q8_0Matrix(rows, columns);
        m.Quantize(0, w);
        foreach (var (r, b, start, end, largest, argmax, row) in Blocks(m, w))
        {
            float amax = Math.Abs(largest);
            // The scale is max|w| / 127 rounded to fp16.
            float d = m.Scale(r, b);
            Assert.Equal((float)(Half)(amax / 127f), d);
            if (amax == 0)
            {
                Assert.All(Enumerable.Range(start, end - start), i => Assert.Equal(0, m.Quant(r, i)));
                continue;
            }

            Assert.Equal(Math.Sign(largest) * 127, m.Quant(r, argmax));
            // q = round(w * fl(1/d)): fl(1/d) and the product each carry a relative error of at
            // most 2^-24, which moves w/d (at most 127.06 here) by under 1e-5 before rounding.
            double limit = d * (0.5 + 1e-5);
            for (int i = start; i < end; i++)
            {
                double error = Math.Abs(w[(r * columns) + i] - ((double)d * m.Quant(r, i)));
                Assert.True(error <= limit, $"row {r} column {i}: |w - d q| = {error:G6} > d/2 = {d / 2:G6}");
                Assert.Equal(d * m.Quant(r, i), row[i]);
            }
        }
    }

    [Theory]
    [InlineData(1, 32)]
    [InlineData(5, 100)]
    [InlineData(9, 1000)]
    public void Q4_0WeightsAreWithinHalfAScaleAndTheLargestMapsToMinus8(int rows, int columns)
    {
        var random = new Random(rows * 1000 + columns + 1);
        var w = RandomWeights(random, rows, columns);
        using var m = new Q4_0Matrix(rows, columns);
        m.Quantize(0, w);
        foreach (var (r, b, start, end, max, argmax, row) in Blocks(m, w))
        {
            // The scale is m / -8 rounded to fp16, m the entry of largest magnitude.
            float d = m.Scale(r, b);
            Assert.Equal((float)(Half)(max / -8f), d);
            if (max == 0)
            {
                Assert.All(Enumerable.Range(start, end - start), i => Assert.Equal(0, m.Quant(r, i)));
                continue;
            }

            Assert.Equal(-8, m.Quant(r, argmax));
            // q = round(w * fl(1/d)) within -8..7: off by at most |d|/2 (and the relative 2^-23
            // of fl(1/d) and the product, on w/d <= 8.01), except that a value near +8|d| of
            // the other sign from m is clamped to 7 |d|: off by at most |d| then.
            for (int i = start; i < end; i++)
            {
                double x = w[(r * columns) + i], error = Math.Abs(x - ((double)d * m.Quant(r, i)));
                double limit = Math.Abs(d) * (x / d > 7.5 ? 1 + 1e-5 : 0.5 + 1e-5);
                Assert.True(error <= limit, $"row {r} column {i}: |w - d q| = {error:G6} > {limit:G6} (d = {d:G6})");
                Assert.InRange(m.Quant(r, i), -8, 7);
                Assert.Equal(d * m.Quant(r, i), row[i]);
            }
        }
    }

    /// <summary>
    /// Every block of <paramref name="m"/>, quantised from <paramref name="w"/>: its row and index,
    /// its columns, its entry of largest magnitude (signed; the first of equals) and where, and the
    /// row as the matrix dequantises it.
    /// </summary>
    private static IEnumerable<(int Row, int Block, int Start, int End, float Largest, int At, float[] Dequantised)> Blocks(BlockMatrix m, float[] w)
    {
        int columns = m.Columns;
        for (int r = 0; r < m.Rows; r++)
        {
            var row = new float[columns];
            m.DequantizeRow(r, row);
            for (int b = 0; b * 32 < columns; b++)
            {
                int start = b * 32, end = Math.Min(columns, start + 32), at = start;
                for (int i = start; i < end; i++)
                {
                    if (Math.Abs(w[(r * columns) + i]) > Math.Abs(w[(r * columns) + at]))
                    {
                        at = i;
                    }
                }

                yield return (r, b, start, end, w[(r * columns) + at], at, row);
            }
        }
    }

    [Theory]
    [InlineData(Format.Q8_0)]
    [InlineData(Format.Q4_0)]
    public void NonFiniteWeightsAreRefused(Format format)
    {
        using var m = Create(format, 2, 40);
        var w = new float[80];
        w[45] = float.NaN;
        var e = Assert.Throws<ArgumentException>(() => m.Quantize(0, w));
        Assert.Contains("row 1", e.Message);
    }

    [Theory]
    [InlineData(1, 32)]
    [InlineData(3, 100)]
    [InlineData(17, 1000)]
    public void ActivationsAreQuantisedPerBlockAsGgmlDoes(int rows, int columns)
    {
        var random = new Random(columns);
        var x = RandomWeights(random, rows, columns);
        var a = new QuantizedActivations();
        int padded = new Q8_0Matrix(1, columns).PaddedColumns;
        fixed (float* px = x)
        {
            a.Quantize(px, rows, columns, columns, padded, CpuWorkerPool.Shared);
        }

        for (int r = 0; r < rows; r++)
        {
            var (q, d) = Reference.QuantizeActivations(x.AsSpan(r * columns, columns), padded);
            for (int b = 0; b < padded / 32; b++)
            {
                Assert.Equal(d[b], a.Scale(r, b));
            }

            for (int i = 0; i < padded; i++)
            {
                Assert.Equal(q[i], a.Quant(r, i));
            }
        }

        a.Dispose();
    }

    /// <summary>
    /// Shapes: output rows not a multiple of the 4-row tile (1, 5, 13, 17, 33), input columns that
    /// end in a partial block (100, 1000) or not, and 1 to 17 activation rows (the 4-row kernel,
    /// the 1- and 2-row remainders), with and without bias.
    /// </summary>
    public static TheoryData<Format, CpuIsa, int, int> Shapes()
    {
        var data = new TheoryData<Format, CpuIsa, int, int>();
        foreach (var format in Enum.GetValues<Format>())
        {
            foreach (var isa in CpuIsas.Supported)
            {
                foreach (var (n, k) in new[] { (1, 32), (5, 64), (13, 100), (17, 1000), (33, 256) })
                {
                    data.Add(format, isa, n, k);
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void GemmMatchesAnFp64DotProductOfTheDequantisedValues(Format format, CpuIsa isa, int n, int k)
    {
        var random = new Random((n * 7919) + k + (int)isa + (int)format);
        var w = RandomWeights(random, n, k);
        var bias = Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        using var m = Create(format, n, k);
        m.Quantize(0, w);
        using var pool = new CpuWorkerPool(3);
        for (int rows = 1; rows <= 17; rows++)
        {
            var x = RandomWeights(random, rows, k);
            foreach (bool withBias in new[] { false, true })
            {
                // A guard past the output: the kernel writes no column beyond n.
                var y = new float[(rows * n) + 16];
                Array.Fill(y, float.NaN, rows * n, 16);
                fixed (float* px = x, py = y, pb = bias)
                {
                    m.Multiply(px, rows, py, withBias ? pb : null, isa, pool);
                }

                Assert.All(y[(rows * n)..], v => Assert.True(float.IsNaN(v)));
                for (int r = 0; r < rows; r++)
                {
                    var (qx, dx) = Reference.QuantizeActivations(x.AsSpan(r * k, k), m.PaddedColumns);
                    for (int j = 0; j < n; j++)
                    {
                        var (exact, magnitude) = Reference.Dot(m, j, qx, dx);
                        double b = withBias ? bias[j] : 0;
                        double tolerance = DotTolerance(m.PaddedColumns) * (magnitude + Math.Abs(b));
                        double error = Math.Abs(y[(r * n) + j] - (exact + b));
                        Assert.True(error <= tolerance, $"{format} {isa} n={n} k={k} rows={rows} bias={withBias}: y[{r},{j}] = {y[(r * n) + j]}, fp64 {exact + b}, error {error:G3} > {tolerance:G3}");
                    }
                }
            }
        }
    }

    /// <summary>
    /// Each block's integer dot product is exact. The kernels round d_w d_x to fp32 once, then add
    /// at most <c>columns / 2</c> scaled partial sums (16 int32 lanes per block of 32 on the
    /// widest Q8_0 path, 4 for Q4_0) and a bias, in an order that depends on the vector width. Any
    /// order of n additions with one rounded product per term stays within gamma(n + 1) = (n + 1) u
    /// / (1 - (n + 1) u) of the sum of the terms' magnitudes, which the caller bounds (see
    /// <see cref="Reference.Dot"/>), plus |bias|.
    /// </summary>
    internal static double DotTolerance(int paddedColumns)
    {
        double n = (paddedColumns / 2) + 2;
        return n * Unit / (1 - (n * Unit));
    }

    [Theory]
    [InlineData(Format.Q8_0)]
    [InlineData(Format.Q4_0)]
    public void AShapeOfZeroRowsOrColumnsIsRefused(Format format)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Create(format, 0, 32));
        Assert.Throws<ArgumentOutOfRangeException>(() => Create(format, 4, 0));
    }

    [Theory]
    [InlineData(Format.Q8_0)]
    [InlineData(Format.Q4_0)]
    public void ADecodeCallAllocatesNothingOnceWarm(Format format)
    {
        var random = new Random(3);
        using var m = Create(format, 64, 256);
        m.Quantize(0, RandomWeights(random, 64, 256));
        var x = RandomWeights(random, 16, 256);
        var y = new float[16 * 64];
        fixed (float* px = x, py = y)
        {
            // Warm: both the shared pool (16 rows) and the calling thread alone (1 row: little work).
            m.Multiply(px, 16, py);
            m.Multiply(px, 1, py);
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 20; i++)
            {
                m.Multiply(px, 1 + i % 16, py);
            }

            Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
        }
    }

    /// <summary>Independent scalar computations of the definitions, in fp64 where they sum.</summary>
    internal static class Reference
    {
        /// <summary>ggml's activation quantisation: d = max|x| / 127, q = round(x * (1 / d)), ties to even; zeros past the end.</summary>
        public static (short[] Q, float[] D) QuantizeActivations(ReadOnlySpan<float> x, int padded)
        {
            var q = new short[padded];
            var d = new float[padded / 32];
            for (int b = 0; b < d.Length; b++)
            {
                float amax = 0;
                for (int i = b * 32; i < Math.Min(x.Length, (b + 1) * 32); i++)
                {
                    amax = Math.Max(amax, Math.Abs(x[i]));
                }

                d[b] = amax / 127f;
                float inverse = d[b] == 0 ? 0 : 1f / d[b];
                for (int i = b * 32; i < Math.Min(x.Length, (b + 1) * 32); i++)
                {
                    q[i] = (short)MathF.Round(x[i] * inverse, MidpointRounding.ToEven);
                }
            }

            return (q, d);
        }

        /// <summary>
        /// The fp64 dot product of row j's dequantised weights and the dequantised activations, and
        /// a bound on the magnitudes of the terms the kernels add: sum_b |d_w d_x| sum_i |q_w q_x|
        /// for Q8_0. Q4_0's kernels add partial sums of the unsigned nibbles q_w + 8, less 8 times
        /// the block's activation sum, so for it sum_i |(q_w + 8) q_x| + 8 sum_i |q_x|.
        /// </summary>
        public static (double Exact, double Magnitude) Dot(BlockMatrix m, int row, short[] qx, float[] dx)
        {
            int offset = m is Q4_0Matrix ? 8 : 0;
            double exact = 0, magnitude = 0;
            for (int b = 0; b * 32 < m.Columns; b++)
            {
                double dw = m.Scale(row, b);
                long dot = 0, abs = 0;
                for (int i = b * 32; i < Math.Min(m.Columns, (b + 1) * 32); i++)
                {
                    dot += m.Quant(row, i) * qx[i];
                    abs += Math.Abs((m.Quant(row, i) + offset) * qx[i]) + (offset * Math.Abs(qx[i]));
                }

                exact += dw * dx[b] * dot;
                magnitude += Math.Abs(dw * dx[b]) * abs;
            }

            return (exact, magnitude);
        }
    }
}
