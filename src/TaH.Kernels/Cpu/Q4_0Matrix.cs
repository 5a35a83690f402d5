namespace TaH.Kernels.Cpu;

/// <summary>
/// GGUF's Q4_0 scheme: each block one fp16 scale d = m / -8, where m is the block's value of
/// largest magnitude, and 32 unsigned nibbles q, w ~ d (q - 8); m itself maps to q = 0. A row's
/// block is 16 bytes, byte i holding entry i in its low nibble and entry i + 16 in its high one
/// (GGUF's order); a tile's block is 64. 18 bytes per 32 weights.
/// </summary>
public sealed unsafe class Q4_0Matrix(int rows, int columns) : BlockMatrix(rows, columns, BlockSize / 2)
{
    /// <summary>
    /// The values are divided by the fp16 scale they will be multiplied by and rounded to the
    /// nearest integer (ties to even), so each dequantised weight is within |d|/2 of its original,
    /// except that +8 |d| (a value as large as m, of the other sign) is clamped to 7 |d|.
    /// </summary>
    protected override Half QuantizeBlock(float* values, byte* quants)
    {
        float amax = 0, max = 0;
        for (int i = 0; i < BlockSize; i++)
        {
            if (Math.Abs(values[i]) > amax)
            {
                amax = Math.Abs(values[i]);
                max = values[i];
            }
        }

        var scale = (Half)(max / -8f);
        float d = (float)scale, inverse = d == 0 ? 0 : 1f / d;
        for (int i = 0; i < BlockSize / 2; i++)
        {
            quants[i] = (byte)(Nibble(values[i] * inverse) | (Nibble(values[i + (BlockSize / 2)] * inverse) << 4));
        }

        return scale;
    }

    public override void Multiply(float* x, int rows, float* y, float* bias = null, CpuIsa? isa = null, CpuWorkerPool? pool = null) =>
        Q4_0Gemm.Multiply(this, x, rows, y, bias, isa, pool);

    protected override int QuantOf(byte* rowBlock, int i) =>
        (i < BlockSize / 2 ? rowBlock[i] & 0xF : rowBlock[i - (BlockSize / 2)] >> 4) - 8;

    private static int Nibble(float scaled) => Math.Clamp((int)MathF.Round(scaled, MidpointRounding.ToEven) + 8, 0, 15);
}
