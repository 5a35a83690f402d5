using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace TaH.Kernels.Cpu;

/// <summary>
/// A <c>[rows, columns]</c> weight matrix in one of GGUF's block schemes (<see cref="Q8_0Matrix"/>,
/// <see cref="Q4_0Matrix"/>): each row in blocks of 32 along the columns, each block one fp16
/// scale and 32 small integers. Repacked for the kernels: rows in tiles of <see cref="TileRows"/>,
/// a tile's blocks stored block by block with its rows' quant bytes side by side, so a tile is
/// one sequential stream; the scales of a tile follow the same order in a second stream. Rows and
/// the blocks of a row are padded with zeros to whole tiles and to groups of 4 blocks (a column
/// count that is not a multiple of 32 ends in a partial block). In native memory.
/// </summary>
public abstract unsafe class BlockMatrix : IDisposable
{
    public const int BlockSize = 32;
    public const int TileRows = 4;

    /// <summary>Blocks per step of the kernels' inner loop: 16 fp16 scales, one 256-bit load.</summary>
    internal const int GroupBlocks = 4;

    private byte* _quants;
    private ushort* _scales;

    protected BlockMatrix(int rows, int columns, int rowBlockBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        Rows = rows;
        Columns = columns;
        RowBlockBytes = rowBlockBytes;
        Blocks = (columns + (BlockSize * GroupBlocks) - 1) / (BlockSize * GroupBlocks) * GroupBlocks;
        Tiles = (rows + TileRows - 1) / TileRows;
        QuantBytes = (long)Tiles * Blocks * TileRows * rowBlockBytes;
        ScaleBytes = (long)Tiles * Blocks * TileRows * sizeof(ushort);
        _quants = (byte*)WeightMemory.Allocate(QuantBytes);
        _scales = (ushort*)WeightMemory.Allocate(ScaleBytes);
    }

    ~BlockMatrix() => Free();

    public int Rows { get; }

    public int Columns { get; }

    /// <summary>Blocks per row, padded to whole groups.</summary>
    internal int Blocks { get; }

    /// <summary>Columns including the padding.</summary>
    public int PaddedColumns => Blocks * BlockSize;

    internal int Tiles { get; }

    /// <summary>Quant bytes of one row's block: a tile's block is <see cref="TileRows"/> of them.</summary>
    internal int RowBlockBytes { get; }

    private long QuantBytes { get; }

    private long ScaleBytes { get; }

    /// <summary>Memory held, padding included.</summary>
    public long Bytes => QuantBytes + ScaleBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal byte* TileQuants(int tile) => _quants + ((long)tile * Blocks * TileRows * RowBlockBytes);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ushort* TileScales(int tile) => _scales + ((long)tile * Blocks * TileRows);

    /// <summary>
    /// Quantises <paramref name="values"/>, <c>count</c> whole rows of <see cref="Columns"/>
    /// each, into rows <paramref name="firstRow"/> onwards.
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
        byte* quants = TileQuants(tile);
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

            // x - x is 0 for finite x and NaN otherwise.
            var zeroIfFinite = Vector256<float>.Zero;
            for (int i = 0; i < BlockSize; i += 8)
            {
                var v = Vector256.Load(block + i);
                zeroIfFinite += v - v;
            }

            if (!Vector256.EqualsAll(zeroIfFinite, Vector256<float>.Zero))
            {
                throw new ArgumentException($"row {row} holds a value that is not finite");
            }

            scales[(b * TileRows) + lane] = BitConverter.HalfToUInt16Bits(QuantizeBlock(block, quants + (((b * TileRows) + lane) * RowBlockBytes)));
        }
    }

    /// <summary>
    /// <paramref name="y"/> <c>[rows, Rows]</c> = <paramref name="x"/> <c>[rows, Columns]</c> times
    /// this matrix transposed, plus <paramref name="bias"/> <c>[Rows]</c> when given: the format's
    /// kernels (<see cref="Q8_0Gemm"/>, <see cref="Q4_0Gemm"/>).
    /// </summary>
    public abstract void Multiply(float* x, int rows, float* y, float* bias = null, CpuIsa? isa = null, CpuWorkerPool? pool = null);

    /// <summary>The largest magnitude of a block of 32 values (the same on every CPU).</summary>
    internal static float AbsMax(float* block)
    {
        var max = Vector256.Max(
            Vector256.Max(Vector256.Abs(Vector256.Load(block)), Vector256.Abs(Vector256.Load(block + 8))),
            Vector256.Max(Vector256.Abs(Vector256.Load(block + 16)), Vector256.Abs(Vector256.Load(block + 24))));
        var m4 = Vector128.Max(max.GetLower(), max.GetUpper());
        return Math.Max(Math.Max(m4[0], m4[1]), Math.Max(m4[2], m4[3]));
    }

    /// <summary>Writes one row's block of 32 finite values as <see cref="RowBlockBytes"/> quant bytes; returns its scale.</summary>
    protected abstract Half QuantizeBlock(float* values, byte* quants);

    /// <summary>The integer of entry <paramref name="i"/> (0..31) of one row's block of quant bytes.</summary>
    protected abstract int QuantOf(byte* rowBlock, int i);

    /// <summary>The fp16 scale of one block, as fp32.</summary>
    public float Scale(int row, int block)
    {
        CheckRow(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)block, (uint)Blocks, nameof(block));
        return (float)BitConverter.UInt16BitsToHalf(TileScales(row / TileRows)[(block * TileRows) + (row % TileRows)]);
    }

    /// <summary>The integer q of one weight, which stands for <c>Scale * q</c>.</summary>
    public int Quant(int row, int column)
    {
        CheckRow(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)column, (uint)Columns, nameof(column));
        return QuantOf(RowBlock(row, column / BlockSize), column % BlockSize);
    }

    /// <summary>Row <paramref name="row"/> as fp32, d q for each weight.</summary>
    public void DequantizeRow(int row, Span<float> destination)
    {
        CheckRow(row);
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, Columns, nameof(destination));
        int lane = row % TileRows;
        ushort* scales = TileScales(row / TileRows);
        for (int b = 0; b * BlockSize < Columns; b++)
        {
            float d = (float)BitConverter.UInt16BitsToHalf(scales[(b * TileRows) + lane]);
            byte* q = RowBlock(row, b);
            int n = Math.Min(BlockSize, Columns - (b * BlockSize));
            for (int i = 0; i < n; i++)
            {
                destination[(b * BlockSize) + i] = d * QuantOf(q, i);
            }
        }
    }

    private byte* RowBlock(int row, int block) => TileQuants(row / TileRows) + (((block * TileRows) + (row % TileRows)) * RowBlockBytes);

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
