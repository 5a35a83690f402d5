using System.Runtime.InteropServices;

namespace TaH.Kernels.Cpu;

/// <summary>
/// A <c>[rows, columns]</c> weight matrix in bf16 (the top half of an fp32), repacked like
/// <see cref="Q8_0Matrix"/>: tiles of 4 rows, stored 32 columns at a time with the tile's rows side
/// by side, columns padded with zeros to a multiple of 32. 2 bytes per weight, in native memory.
/// </summary>
public sealed unsafe class Bf16Matrix : IDisposable
{
    public const int TileRows = 4;

    /// <summary>Columns per step of the kernels (one 512-bit register of fp32 is 16; two per step).</summary>
    internal const int Chunk = 32;

    private ushort* _values;

    public Bf16Matrix(int rows, int columns)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        Rows = rows;
        Columns = columns;
        PaddedColumns = (columns + Chunk - 1) / Chunk * Chunk;
        Tiles = (rows + TileRows - 1) / TileRows;
        Bytes = (long)Tiles * TileRows * PaddedColumns * sizeof(ushort);
        _values = (ushort*)WeightMemory.Allocate(Bytes);
    }

    ~Bf16Matrix() => Free();

    public int Rows { get; }

    public int Columns { get; }

    internal int PaddedColumns { get; }

    internal int Tiles { get; }

    public long Bytes { get; }

    internal ushort* Tile(int tile) => _values + ((long)tile * TileRows * PaddedColumns);

    /// <summary>Stores whole rows of bf16 bit patterns from row <paramref name="firstRow"/> on.</summary>
    public void Store(int firstRow, ReadOnlySpan<ushort> bits)
    {
        ObjectDisposedException.ThrowIf(_values is null, this);
        if (bits.Length % Columns != 0 || firstRow < 0 || firstRow + (bits.Length / Columns) > Rows)
        {
            throw new ArgumentException($"{bits.Length} values are not whole rows of {Columns} within rows {firstRow}..{Rows - 1}");
        }

        fixed (ushort* source = bits)
        {
            ushort* p = source;
            // Load time only: rows are independent, each writes its own chunks.
            Parallel.For(0, bits.Length / Columns, r =>
            {
                int row = firstRow + r;
                ushort* tile = Tile(row / TileRows) + ((row % TileRows) * Chunk);
                for (int c = 0; c < Columns; c += Chunk)
                {
                    new ReadOnlySpan<ushort>(p + ((long)r * Columns) + c, Math.Min(Chunk, Columns - c))
                        .CopyTo(new Span<ushort>(tile + ((c / Chunk) * TileRows * Chunk), Chunk));
                }
            });
        }
    }

    /// <summary>One weight as fp32 (exact: bf16 widens without rounding).</summary>
    public float Value(int row, int column)
    {
        ObjectDisposedException.ThrowIf(_values is null, this);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)Rows, nameof(row));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)column, (uint)Columns, nameof(column));
        return Bf16Bits.ToSingle(Tile(row / TileRows)[Offset(row % TileRows, column)]);
    }

    /// <summary>Row <paramref name="row"/> as fp32.</summary>
    public void Row(int row, Span<float> destination)
    {
        ObjectDisposedException.ThrowIf(_values is null, this);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)Rows, nameof(row));
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, Columns, nameof(destination));
        ushort* tile = Tile(row / TileRows) + ((row % TileRows) * Chunk);
        for (int c = 0; c < Columns; c += Chunk)
        {
            ushort* source = tile + ((c / Chunk) * TileRows * Chunk);
            for (int i = 0; i < Math.Min(Chunk, Columns - c); i++)
            {
                destination[c + i] = Bf16Bits.ToSingle(source[i]);
            }
        }
    }

    private static int Offset(int lane, int column) => ((column / Chunk) * TileRows * Chunk) + (lane * Chunk) + (column % Chunk);

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (_values is not null)
        {
            WeightMemory.Free(_values);
            _values = null;
        }
    }
}
