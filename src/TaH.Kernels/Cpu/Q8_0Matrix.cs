using System.Runtime.Intrinsics;

namespace TaH.Kernels.Cpu;

/// <summary>
/// GGUF's Q8_0 scheme: each block one fp16 scale d = max|w| / 127 and 32 int8 values q,
/// w ~ d q; a row's block is 32 bytes, a tile's block 128. 34 bytes per 32 weights.
/// </summary>
public sealed unsafe class Q8_0Matrix(int rows, int columns) : BlockMatrix(rows, columns, BlockSize)
{
    /// <summary>
    /// The values are divided by the fp16 scale they will be multiplied by, and rounded to the
    /// nearest integer (ties to even), so each dequantised weight is within d/2 of its original
    /// and max|w| maps to +-127.
    /// </summary>
    protected override Half QuantizeBlock(float* values, byte* quants)
    {
        var scale = (Half)(AbsMax(values) / 127f);
        float d = (float)scale, inverse = d == 0 ? 0 : 1f / d;
        var s = Vector256.Create(inverse);
        var low = Vector256.Narrow(Round(Vector256.Load(values) * s), Round(Vector256.Load(values + 8) * s));
        var high = Vector256.Narrow(Round(Vector256.Load(values + 16) * s), Round(Vector256.Load(values + 24) * s));
        Vector256.Narrow(low, high).Store((sbyte*)quants);
        return scale;
    }

    public override void Multiply(float* x, int rows, float* y, float* bias = null, CpuIsa? isa = null, CpuWorkerPool? pool = null) =>
        Q8_0Gemm.Multiply(this, x, rows, y, bias, isa, pool);

    protected override int QuantOf(byte* rowBlock, int i) => ((sbyte*)rowBlock)[i];

    /// <summary>Nearest integer, ties to even, clamped to the int8 range the blocks use.</summary>
    private static Vector256<int> Round(Vector256<float> v) =>
        Vector256.Clamp(Vector256.ConvertToInt32(Vector256.Round(v)), Vector256.Create(-127), Vector256.Create(127));
}
