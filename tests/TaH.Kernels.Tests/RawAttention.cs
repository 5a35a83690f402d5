using TaH.Kernels.Cuda;

namespace TaH.Kernels.Tests;

/// <summary>An <see cref="AttentionCase"/> on the GPU in the tests' own device buffers.</summary>
internal sealed class RawAttention : IDisposable
{
    private readonly List<DeviceBuffer> _buffers = [];

    /// <param name="randomBits">For benchmarks: fill the pools with random bits from this generator instead of the case's values.</param>
    public RawAttention(CudaDevice device, AttentionCase c, bool poisonRowSlots = true, Random? randomBits = null, PrefillVariant? prefill = null)
    {
        Case = c;
        var variant = prefill ?? PrefillVariant.Default;
        Layout = new AttentionLayout(c.Batch, variant.TileRows);
        Kernels = new PagedAttentionKernels(device, c.Bf16 ? "bf16" : "fp16", c.HeadDim, c.Heads / c.KvHeads, variant);
        var keyBits = randomBits is null ? AttentionCase.Bits(c.KeyPool, c.Bf16) : RandomBits(randomBits, c.KeyPool.Length, c.Bf16);
        var valueBits = randomBits is null ? AttentionCase.Bits(c.ValuePool, c.Bf16) : RandomBits(randomBits, c.ValuePool.Length, c.Bf16);
        K = Add(DeviceBuffer.From<ushort>(AttentionCase.Bits(c.RowsOf(c.KeyPool), c.Bf16)));
        V = Add(DeviceBuffer.From<ushort>(AttentionCase.Bits(c.RowsOf(c.ValuePool), c.Bf16)));
        if (poisonRowSlots)
        {
            // The rows' own entries must come from kv_write, not from the upload.
            int width = c.KvHeads * c.HeadDim;
            foreach (long slot in c.Batch.RowSlot)
            {
                Array.Fill(keyBits, (ushort)0x7fff, (int)(slot * width), width);
                Array.Fill(valueBits, (ushort)0x7fff, (int)(slot * width), width);
            }
        }

        KeyPool = Add(DeviceBuffer.From<ushort>(keyBits));
        ValuePool = Add(DeviceBuffer.From<ushort>(valueBits));
        Q = Add(DeviceBuffer.From<ushort>(AttentionCase.Bits(c.Q, c.Bf16)));
        Output = Add(DeviceBuffer.Allocate((long)c.Q.Length * 2));
        Ints = Add(DeviceBuffer.From<int>(Layout.Ints.Length > 0 ? Layout.Ints : [0]));
        Slots = Add(DeviceBuffer.From<long>(Layout.Slots));
        var (acc, ml) = Kernels.WorkspaceSize(Layout, c.Heads);
        Workspace = Add(DeviceBuffer.Allocate(Math.Max(1, acc + ml) * 4));
        Pointers = new LayoutPointers(Ints.Pointer, Slots.Pointer, Workspace.Pointer, Workspace.Pointer + (nint)(acc * 4));
    }

    public AttentionCase Case { get; }

    public AttentionLayout Layout { get; }

    public PagedAttentionKernels Kernels { get; }

    public DeviceBuffer K { get; }

    public DeviceBuffer V { get; }

    public DeviceBuffer KeyPool { get; }

    public DeviceBuffer ValuePool { get; }

    public DeviceBuffer Q { get; }

    public DeviceBuffer Output { get; }

    public DeviceBuffer Ints { get; }

    public DeviceBuffer Slots { get; }

    public DeviceBuffer Workspace { get; }

    public LayoutPointers Pointers { get; }

    public double Scale => 1.0 / Math.Sqrt(Case.HeadDim);

    /// <summary>kv_write and attention, on a NaN-poisoned output; returns the output as floats.</summary>
    public float[] Run()
    {
        Output.Fill(0xff);
        Kernels.Run(Layout, Pointers, Q.Pointer, K.Pointer, V.Pointer, KeyPool.Pointer, ValuePool.Pointer, Output.Pointer, Case.Heads, Case.KvHeads, Scale);
        CudaDevice.Synchronize();
        return Read(Output, Case.Q.Length, Case.Bf16);
    }

    public void Attend() =>
        Kernels.Attend(Layout, Pointers, Q.Pointer, KeyPool.Pointer, ValuePool.Pointer, Output.Pointer, Case.Heads, Case.KvHeads, Scale);

    /// <summary>Random finite values of magnitude 1/128..2 with random signs, straight as bits.</summary>
    public static ushort[] RandomBits(Random random, long count, bool bf16)
    {
        var bits = new ushort[count];
        random.NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan()));
        for (long i = 0; i < count; i++)
        {
            uint b = bits[i];
            bits[i] = bf16
                ? (ushort)((b & 0x807fu) | ((uint)(120 + ((b >> 7) & 7)) << 7))
                : (ushort)((b & 0x83ffu) | ((uint)(8 + ((b >> 10) & 7)) << 10));
        }

        return bits;
    }

    public static float[] Read(DeviceBuffer buffer, long count, bool bf16)
    {
        var bits = buffer.Download<ushort>(count);
        var values = new float[count];
        for (long i = 0; i < count; i++)
        {
            values[i] = Half16.FromBits(bits[i], bf16);
        }

        return values;
    }

    private DeviceBuffer Add(DeviceBuffer buffer)
    {
        _buffers.Add(buffer);
        return buffer;
    }

    public void Dispose()
    {
        foreach (var b in _buffers)
        {
            b.Dispose();
        }
    }
}
