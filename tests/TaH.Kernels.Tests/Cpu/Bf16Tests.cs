using TaH.Kernels.Cpu;

namespace TaH.Kernels.Tests.Cpu;

/// <summary>The bf16 kernels against fp64 dot products of the same bf16 weights and fp32 activations.</summary>
public unsafe class Bf16Tests
{
    private const double Unit = 1.0 / (1 << 24);

    public static TheoryData<CpuIsa, int, int> Shapes()
    {
        var data = new TheoryData<CpuIsa, int, int>();
        foreach (var isa in CpuIsas.Supported)
        {
            foreach (var (n, k) in new[] { (1, 32), (5, 40), (13, 100), (17, 512) })
            {
                data.Add(isa, n, k);
            }
        }

        return data;
    }

    /// <summary>Truncated fp32 bits with a random low half dropped: any bf16 pattern of a finite value.</summary>
    private static ushort[] RandomBits(Random random, int count) =>
        [.. Enumerable.Range(0, count).Select(_ => (ushort)(BitConverter.SingleToInt32Bits((float)((random.NextDouble() * 2 - 1) * Math.Pow(10, random.Next(-2, 2)))) >> 16))];

    [Theory]
    [MemberData(nameof(Shapes))]
    public void GemmMatchesAnFp64DotProduct(CpuIsa isa, int n, int k)
    {
        var random = new Random((n * 31) + k + (int)isa);
        var bits = RandomBits(random, n * k);
        using var w = new Bf16Matrix(n, k);
        w.Store(0, bits);
        var bias = Enumerable.Range(0, n).Select(_ => (float)random.NextDouble()).ToArray();
        using var pool = new CpuWorkerPool(3);
        for (int rows = 1; rows <= 17; rows++)
        {
            var x = Enumerable.Range(0, rows * k).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
            var y = new float[(rows * n) + 8];
            Array.Fill(y, float.NaN, rows * n, 8);
            fixed (float* px = x, py = y, pb = bias)
            {
                Bf16Gemm.Multiply(w, px, rows, py, pb, isa, pool);
            }

            Assert.All(y[(rows * n)..], v => Assert.True(float.IsNaN(v)));
            for (int r = 0; r < rows; r++)
            {
                for (int j = 0; j < n; j++)
                {
                    double exact = bias[j], magnitude = Math.Abs(bias[j]);
                    for (int i = 0; i < k; i++)
                    {
                        double product = (double)BitConverter.Int32BitsToSingle(bits[(j * k) + i] << 16) * x[(r * k) + i];
                        exact += product;
                        magnitude += Math.Abs(product);
                    }

                    // k products (FMA: no separate rounding) and the bias, added in any order.
                    double g = (k + 2) * Unit;
                    double tolerance = g / (1 - g) * magnitude;
                    Assert.True(Math.Abs(y[(r * n) + j] - exact) <= tolerance, $"{isa} y[{r},{j}] = {y[(r * n) + j]}, fp64 {exact}");
                }
            }
        }
    }

    [Fact]
    public void StoredBitsReadBackAsTheirFp32Values()
    {
        var random = new Random(5);
        var bits = RandomBits(random, 7 * 45);
        using var w = new Bf16Matrix(7, 45);
        w.Store(0, bits);
        var row = new float[45];
        for (int r = 0; r < 7; r++)
        {
            w.Row(r, row);
            for (int c = 0; c < 45; c++)
            {
                Assert.Equal(BitConverter.Int32BitsToSingle(bits[(r * 45) + c] << 16), row[c]);
                Assert.Equal(row[c], w.Value(r, c));
            }
        }
    }
}
