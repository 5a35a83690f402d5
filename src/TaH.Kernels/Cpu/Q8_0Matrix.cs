using System.Runtime.InteropServices;

namespace TaH.Kernels.Cpu;

/// <summary>
/// A <c>[rows, columns]</c> weight matrix in GGUF's Q8_0 scheme: each row in blocks of 32 along
/// the columns, each block one fp16 scale d = max|w| / 127 and 32 int8 values q, w ~ d q.
/// Repacked for the kernels: rows in tiles of <see cref="TileRows"/>, a tile's blocks stored
/// block by block with its rows' 32 bytes side by side, so a tile is one sequential stream;
/// the scales of a tile follow the same order in a second stream. Rows and the blocks of a row
/// are padded with zeros to whole tiles and to groups of 4 blocks (a column count that is not a
/// multiple of 32 ends in a partial block). 34 bytes per 32 weights, in native memory.
/// </summary>
public sealed unsafe class Q8_0Matrix : IDisposable
{
    public const int BlockSize = 32;
    public const int TileRows = 4;

    /// <summary>Blocks per step of the kernels' inner loop: 16 fp16 scales, one 256-bit load.</summary>
    internal const int GroupBlocks = 4;

    private sbyte* _quants;
    private ushort* _scales;

    public Q8_0Matrix(int rows, int columns)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        Rows = rows;
        Columns = columns;
        Blocks = (columns + (BlockSize * GroupBlocks) - 1) / (BlockSize * GroupBlocks) * GroupBlocks;
        Tiles = (rows + TileRows - 1) / TileRows;
        QuantBytes = (long)Tiles * Blocks * TileRows * BlockSize;
        ScaleBytes = (long)Tiles * Blocks * TileRows * sizeof(ushort);
        _quants = (sbyte*)NativeMemory.AlignedAlloc((nuint)QuantBytes, 64);
        _scales = (ushort*)NativeMemory.AlignedAlloc((nuint)ScaleBytes, 64);
        NativeMemory.Clear(_quants, (nuint)QuantBytes);
        NativeMemory.Clear(_scales, (nuint)ScaleBytes);
        GC.AddMemoryPressure(Bytes);
    }

    ~Q8_0Matrix() => Free();

    public int Rows { get; }

    public int Columns { get; }

    /// <summary>Blocks per row, padded to whole groups.</summary>
    internal int Blocks { get; }

    /// <summary>Columns including the padding.</summary>
    internal int PaddedColumns => Blocks * BlockSize;

    internal int Tiles { get; }

    private long QuantBytes { get; }

    private long ScaleBytes { get; }

    /// <summary>Memory held, padding included.</summary>
    public long Bytes => QuantBytes + ScaleBytes;

    internal sbyte* TileQuants(int tile) => _quants + ((long)tile * Blocks * TileRows * BlockSize);

    internal ushort* TileScales(int tile) => _scales + ((long)tile * Blocks * TileRows);

    /// <summary>
    /// Quantises <paramref name="values"/>, <c>count</c> whole rows of <see cref="Columns"/>
    /// each, into rows <paramref name="firstRow"/> onwards. The values are divided by the fp16
    /// scale they will be multiplied by, and rounded to the nearest integer (ties to even), so each
    /// dequantised weight is within d/2 of its original and max|w| maps to +-127.
    /// </summary>
    public void Quantize(int firstRow, ReadOnlySpan<float> values)
    {
        ObjectDisposedException.ThrowIf(_quants is null, this);
        if (values.Length % Columns != 0 || firstRow < 0 || firstRow + (values.Length / Columns) > Rows)
        {
            throw new ArgumentException($"{values.Length} values are not whole rows of {Columns} within rows {firstRow}..{Rows - 1}");
        }

        for (int r = 0; r < values.Length / Columns; r++)
        {
            QuantizeRow(firstRow + r, values.Slice(r * Columns, Columns));
        }
    }

    private void QuantizeRow(int row, ReadOnlySpan<float> values)
    {
        int tile = row / TileRows, lane = row % TileRows;
        sbyte* quants = TileQuants(tile);
        ushort* scales = TileScales(tile);
        for (int b = 0; b * BlockSize < Columns; b++)
        {
            var block = values.Slice(b * BlockSize, Math.Min(BlockSize, Columns - (b * BlockSize)));
            float max = 0;
            foreach (float v in block)
            {
                max = Math.Max(max, Math.Abs(v));
            }

            if (!float.IsFinite(max))
            {
                throw new ArgumentException($"row {row} holds a value that is not finite");
            }

            var scale = (Half)(max / 127f);
            float d = (float)scale, inverse = d == 0 ? 0 : 1f / d;
            scales[(b * TileRows) + lane] = BitConverter.HalfToUInt16Bits(scale);
            sbyte* q = quants + (((b * TileRows) + lane) * BlockSize);
            for (int i = 0; i < block.Length; i++)
            {
                q[i] = (sbyte)Math.Clamp(MathF.Round(block[i] * inverse), -127f, 127f);
            }
        }
    }

    /// <summary>The fp16 scale of one block, as fp32.</summary>
    public float Scale(int row, int block)
    {
        CheckRow(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)block, (uint)Blocks, nameof(block));
        return (float)BitConverter.UInt16BitsToHalf(TileScales(row / TileRows)[(block * TileRows) + (row % TileRows)]);
    }

    public sbyte Quant(int row, int column)
    {
        CheckRow(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)column, (uint)Columns, nameof(column));
        int b = column / BlockSize;
        return TileQuants(row / TileRows)[(((b * TileRows) + (row % TileRows)) * BlockSize) + (column % BlockSize)];
    }

    /// <summary>Row <paramref name="row"/> as fp32, d q for each weight.</summary>
    public void DequantizeRow(int row, Span<float> destination)
    {
        CheckRow(row);
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, Columns, nameof(destination));
        int lane = row % TileRows;
        sbyte* quants = TileQuants(row / TileRows);
        ushort* scales = TileScales(row / TileRows);
        for (int b = 0; b * BlockSize < Columns; b++)
        {
            float d = (float)BitConverter.UInt16BitsToHalf(scales[(b * TileRows) + lane]);
            sbyte* q = quants + (((b * TileRows) + lane) * BlockSize);
            int n = Math.Min(BlockSize, Columns - (b * BlockSize));
            for (int i = 0; i < n; i++)
            {
                destination[(b * BlockSize) + i] = d * q[i];
            }
        }
    }

    private void CheckRow(int row)
    {
        ObjectDisposedException.ThrowIf(_quants is null, this);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)Rows, nameof(row));
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (_quants is null)
        {
            return;
        }

        NativeMemory.AlignedFree(_quants);
        NativeMemory.AlignedFree(_scales);
        _quants = null;
        _scales = null;
        GC.RemoveMemoryPressure(Bytes);
    }
}
