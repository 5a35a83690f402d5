using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

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
        _quants = (sbyte*)WeightMemory.Allocate(QuantBytes);
        _scales = (ushort*)WeightMemory.Allocate(ScaleBytes);
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
        fixed (float* source = values)
        {
            float* p = source;
            ForRows(firstRow, values.Length, (row, r, _) => QuantizeRow(row, p + ((long)r * Columns)));
        }
    }

    /// <summary><see cref="Quantize(int, ReadOnlySpan{float})"/> from bf16 bit patterns (as a checkpoint stores them), widened exactly row by row.</summary>
    public void QuantizeBFloat16(int firstRow, ReadOnlySpan<ushort> bits)
    {
        fixed (ushort* source = bits)
        {
            ushort* p = source;
            ForRows(firstRow, bits.Length, (row, r, buffer) =>
            {
                ushort* b = p + ((long)r * Columns);
                for (int i = 0; i < Columns; i++)
                {
                    buffer[i] = Bf16Bits.ToSingle(b[i]);
                }

                QuantizeRow(row, buffer);
            });
        }
    }

    private delegate void RowAction(int row, int index, float* buffer);

    /// <summary>Runs <paramref name="action"/> for each of the whole rows in <paramref name="length"/> values, in parallel (load time only: each row writes its own bytes).</summary>
    private void ForRows(int firstRow, int length, RowAction action)
    {
        ObjectDisposedException.ThrowIf(_quants is null, this);
        if (length % Columns != 0 || firstRow < 0 || firstRow + (length / Columns) > Rows)
        {
            throw new ArgumentException($"{length} values are not whole rows of {Columns} within rows {firstRow}..{Rows - 1}");
        }

        int rows = length / Columns, columns = Columns;
        try
        {
            Parallel.For(0, rows, () => (IntPtr)NativeMemory.Alloc((nuint)columns, sizeof(float)), (r, _, buffer) =>
            {
                action(firstRow + r, r, (float*)buffer);
                return buffer;
            }, buffer => NativeMemory.Free((void*)buffer));
        }
        catch (AggregateException e) when (e.InnerExceptions[0] is ArgumentException refused)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(refused);
        }
    }

    private void QuantizeRow(int row, float* values)
    {
        int tile = row / TileRows, lane = row % TileRows;
        sbyte* quants = TileQuants(tile);
        ushort* scales = TileScales(tile);
        float* partial = stackalloc float[BlockSize];
        for (int b = 0; b * BlockSize < Columns; b++)
        {
            int n = Math.Min(BlockSize, Columns - (b * BlockSize));
            float* block = values + (b * BlockSize);
            if (n < BlockSize)
            {
                new Span<float>(partial, BlockSize).Clear();
                new ReadOnlySpan<float>(block, n).CopyTo(new Span<float>(partial, BlockSize));
                block = partial;
            }

            var v0 = Vector256.Load(block);
            var v1 = Vector256.Load(block + 8);
            var v2 = Vector256.Load(block + 16);
            var v3 = Vector256.Load(block + 24);
            var max = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
            float amax = 0;
            for (int i = 0; i < 8; i++)
            {
                amax = Math.Max(amax, max[i]);
            }

            // x - x is 0 for finite x and NaN otherwise (max may drop a NaN).
            var zeroIfFinite = (v0 - v0) + (v1 - v1) + (v2 - v2) + (v3 - v3);
            if (!Vector256.EqualsAll(zeroIfFinite, Vector256<float>.Zero))
            {
                throw new ArgumentException($"row {row} holds a value that is not finite");
            }

            var scale = (Half)(amax / 127f);
            float d = (float)scale, inverse = d == 0 ? 0 : 1f / d;
            scales[(b * TileRows) + lane] = BitConverter.HalfToUInt16Bits(scale);
            var s = Vector256.Create(inverse);
            var low = Vector256.Narrow(Round(v0 * s), Round(v1 * s));
            var high = Vector256.Narrow(Round(v2 * s), Round(v3 * s));
            Vector256.Narrow(low, high).Store(quants + (((b * TileRows) + lane) * BlockSize));
        }
    }

    /// <summary>Nearest integer, ties to even, clamped to the int8 range the blocks use.</summary>
    private static Vector256<int> Round(Vector256<float> v) =>
        Vector256.Clamp(Vector256.ConvertToInt32(Vector256.Round(v)), Vector256.Create(-127), Vector256.Create(127));

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

        WeightMemory.Free(_quants);
        WeightMemory.Free(_scales);
        _quants = null;
        _scales = null;
    }
}
