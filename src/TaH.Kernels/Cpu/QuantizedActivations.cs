using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace TaH.Kernels.Cpu;

/// <summary>
/// Activation rows quantised for the Q8_0 kernels, as ggml quantises them for
/// <c>ggml_vec_dot_q8_0_q8_0</c>: per block of 32, d = max|x| / 127 and q = round(x / d) (ties to
/// even, x times the fp32 reciprocal of d), here with d kept in fp32. The values are stored widened
/// to int16 (the Q8_0 kernels multiply int16 pairs), rows padded with zeros to the weights' padded
/// columns; on request also as int8, with each block's sum (the Q4_0 kernels multiply unsigned
/// nibbles by int8 and take the offset of 8 off once per block). The scales are kept twice:
/// row-major for the one-row kernel, block-major (rows padded to 4) for the four-row one. A
/// per-thread scratch that grows and is then reused.
/// </summary>
internal sealed unsafe class QuantizedActivations : IDisposable
{
    [ThreadStatic]
    private static QuantizedActivations? _forThread;

    private const int RowsPerItem = 8;

    private readonly RowsJob _job = new();
    private long _capacity;
    private byte* _memory;

    ~QuantizedActivations() => Free();

    /// <summary>This thread's scratch.</summary>
    public static QuantizedActivations ForThread => _forThread ??= new QuantizedActivations();

    public int Rows { get; private set; }

    /// <summary>Rows rounded up to a multiple of 4: the stride of <see cref="BlockScales"/>.</summary>
    public int RowStride { get; private set; }

    /// <summary>Padded columns: the stride of <see cref="Quants"/>.</summary>
    public int Columns { get; private set; }

    public int Blocks => Columns / BlockMatrix.BlockSize;

    public short* Quants { get; private set; }

    /// <summary>The quants as int8, <c>[rows, Columns]</c>, when asked for; else null.</summary>
    public sbyte* Bytes { get; private set; }

    /// <summary>Each block's sum of quants, <c>[rows, blocks]</c>, with <see cref="Bytes"/>.</summary>
    public int* Sums { get; private set; }

    /// <summary><c>[rows, blocks]</c>.</summary>
    public float* RowScales { get; private set; }

    /// <summary><c>[blocks, RowStride]</c>.</summary>
    public float* BlockScales { get; private set; }

    public short Quant(int row, int column) => Quants[((long)row * Columns) + column];

    public float Scale(int row, int block) => RowScales[((long)row * Blocks) + block];

    /// <summary>
    /// Quantises <paramref name="rows"/> rows of <paramref name="columns"/> floats (row stride
    /// <paramref name="stride"/>), padding to <paramref name="paddedColumns"/>; many rows are
    /// shared out over <paramref name="pool"/>.
    /// </summary>
    public void Quantize(float* x, int rows, int columns, long stride, int paddedColumns, CpuWorkerPool pool, bool bytes = false)
    {
        Rows = rows;
        RowStride = (rows + 3) & ~3;
        Columns = paddedColumns;
        int blocks = paddedColumns / BlockMatrix.BlockSize;
        long quantBytes = Aligned((long)rows * paddedColumns * sizeof(short));
        long rowScaleBytes = Aligned((long)rows * blocks * sizeof(float));
        long blockScaleBytes = Aligned((long)blocks * RowStride * sizeof(float));
        long byteBytes = bytes ? Aligned((long)rows * paddedColumns) : 0, sumBytes = bytes ? Aligned((long)rows * blocks * sizeof(int)) : 0;
        Reserve(quantBytes + rowScaleBytes + blockScaleBytes + byteBytes + sumBytes);
        Quants = (short*)_memory;
        RowScales = (float*)(_memory + quantBytes);
        BlockScales = (float*)(_memory + quantBytes + rowScaleBytes);
        Bytes = bytes ? (sbyte*)(_memory + quantBytes + rowScaleBytes + blockScaleBytes) : null;
        Sums = bytes ? (int*)(_memory + quantBytes + rowScaleBytes + blockScaleBytes + byteBytes) : null;
        NativeMemory.Clear(BlockScales, (nuint)blockScaleBytes);
        _job.Set(this, x, columns, stride);
        if (rows < RowsPerItem * 2)
        {
            for (int r = 0; r < rows; r++)
            {
                QuantizeRow(x + (r * stride), r, columns);
            }
        }
        else
        {
            pool.Run(_job, (rows + RowsPerItem - 1) / RowsPerItem);
        }
    }

    private void QuantizeRow(float* source, int row, int columns)
    {
        short* quants = Quants + ((long)row * Columns);
        Span<float> partial = stackalloc float[BlockMatrix.BlockSize];
        for (int b = 0; b < Blocks; b++)
        {
            int start = b * BlockMatrix.BlockSize, n = Math.Clamp(columns - start, 0, BlockMatrix.BlockSize);
            float d;
            if (n == BlockMatrix.BlockSize)
            {
                d = QuantizeBlock(source + start, quants + start);
            }
            else
            {
                partial.Clear();
                new ReadOnlySpan<float>(source + start, n).CopyTo(partial);
                fixed (float* p = partial)
                {
                    d = QuantizeBlock(p, quants + start);
                }
            }

            RowScales[((long)row * Blocks) + b] = d;
            BlockScales[((long)b * RowStride) + row] = d;
            if (Bytes is not null)
            {
                var q0 = Vector256.Load(quants + start);
                var q1 = Vector256.Load(quants + start + 16);
                Vector256.Narrow(q0, q1).Store(Bytes + ((long)row * Columns) + start);
                Sums[((long)row * Blocks) + b] = Vector256.Sum(Vector256.WidenLower(q0) + Vector256.WidenUpper(q0) + Vector256.WidenLower(q1) + Vector256.WidenUpper(q1));
            }
        }
    }

    private static long Aligned(long bytes) => (bytes + 63) & ~63L;

    /// <summary>One block of 32: writes q, returns d. The same arithmetic on every CPU.</summary>
    private static float QuantizeBlock(float* values, short* quants)
    {
        float d = BlockMatrix.AbsMax(values) / 127f, inverse = d == 0 ? 0 : 1f / d;
        var scale = Vector256.Create(inverse);
        Vector256.Narrow(Round(Vector256.Load(values) * scale), Round(Vector256.Load(values + 8) * scale)).Store(quants);
        Vector256.Narrow(Round(Vector256.Load(values + 16) * scale), Round(Vector256.Load(values + 24) * scale)).Store(quants + 16);
        return d;
    }

    private static Vector256<int> Round(Vector256<float> v) => Vector256.ConvertToInt32(Vector256.Round(v));

    private void Reserve(long bytes)
    {
        if (bytes <= _capacity)
        {
            return;
        }

        long capacity = Math.Max(bytes, _capacity * 2);
        Free();
        _memory = (byte*)NativeMemory.AlignedAlloc((nuint)capacity, 64);
        _capacity = capacity;
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (_memory is not null)
        {
            NativeMemory.AlignedFree(_memory);
            _memory = null;
            _capacity = 0;
        }
    }

    private sealed class RowsJob : PoolJob
    {
        private QuantizedActivations? _owner;
        private float* _x;
        private int _columns;
        private long _stride;

        public void Set(QuantizedActivations owner, float* x, int columns, long stride)
        {
            _owner = owner;
            _x = x;
            _columns = columns;
            _stride = stride;
        }

        public override void Execute(int item)
        {
            int end = Math.Min(_owner!.Rows, (item + 1) * RowsPerItem);
            for (int r = item * RowsPerItem; r < end; r++)
            {
                _owner.QuantizeRow(_x + (r * _stride), r, _columns);
            }
        }
    }
}
