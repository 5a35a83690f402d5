using System.Buffers.Binary;
using System.Text;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Checkpoints.Writing;

/// <summary>
/// Writes a zip of uncompressed entries whose data start on 64-byte boundaries, padded with an
/// "FB" extra field the way PyTorch's archive writer does. No zip64: at most 4 GiB and 65535 entries.
/// </summary>
internal sealed class ZipStoreWriter(Stream stream, string path)
{
    private const int Alignment = 64;
    private const ushort Version = 20;
    private const ushort DosDate = (1 << 5) | 1; // 1980-01-01, the earliest date zip can express
    private const ushort PaddingFieldId = 'F' | ('B' << 8);

    private readonly List<(byte[] Name, ushort Flags, uint Crc, uint Size, uint Offset)> _entries = [];

    public void Add(string name, ReadOnlySpan<byte> data)
    {
        uint crc = Crc32.Append(0, data);
        WriteLocalHeader(name, crc, data.Length);
        stream.Write(data);
    }

    /// <summary>Adds the bytes of a contiguous CPU tensor.</summary>
    public void Add(string name, torch.Tensor tensor)
    {
        uint crc = 0;
        TensorBytes.ForEachChunk(tensor, (chunk, _) => crc = Crc32.Append(crc, chunk));
        WriteLocalHeader(name, crc, tensor.NumberOfElements * tensor.ElementSize);
        TensorBytesWriter.WriteToStream(stream, tensor);
    }

    /// <summary>Writes the central directory; the archive is complete afterwards.</summary>
    public void Finish()
    {
        long directoryStart = stream.Position;
        Span<byte> header = stackalloc byte[46];
        foreach (var entry in _entries)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(header, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(header[4..], Version);
            BinaryPrimitives.WriteUInt16LittleEndian(header[6..], Version);
            BinaryPrimitives.WriteUInt16LittleEndian(header[8..], entry.Flags);
            BinaryPrimitives.WriteUInt16LittleEndian(header[10..], 0); // stored
            BinaryPrimitives.WriteUInt16LittleEndian(header[12..], 0);
            BinaryPrimitives.WriteUInt16LittleEndian(header[14..], DosDate);
            BinaryPrimitives.WriteUInt32LittleEndian(header[16..], entry.Crc);
            BinaryPrimitives.WriteUInt32LittleEndian(header[20..], entry.Size);
            BinaryPrimitives.WriteUInt32LittleEndian(header[24..], entry.Size);
            BinaryPrimitives.WriteUInt16LittleEndian(header[28..], (ushort)entry.Name.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(header[30..], 0); // extra
            BinaryPrimitives.WriteUInt16LittleEndian(header[32..], 0); // comment
            BinaryPrimitives.WriteUInt16LittleEndian(header[34..], 0); // disk
            BinaryPrimitives.WriteUInt16LittleEndian(header[36..], 0); // internal attributes
            BinaryPrimitives.WriteUInt32LittleEndian(header[38..], 0); // external attributes
            BinaryPrimitives.WriteUInt32LittleEndian(header[42..], entry.Offset);
            stream.Write(header);
            stream.Write(entry.Name);
        }

        long directorySize = stream.Position - directoryStart;
        CheckLimit(stream.Position);
        Span<byte> end = stackalloc byte[22];
        BinaryPrimitives.WriteUInt32LittleEndian(end, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(end[4..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(end[6..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(end[8..], (ushort)_entries.Count);
        BinaryPrimitives.WriteUInt16LittleEndian(end[10..], (ushort)_entries.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(end[12..], (uint)directorySize);
        BinaryPrimitives.WriteUInt32LittleEndian(end[16..], (uint)directoryStart);
        BinaryPrimitives.WriteUInt16LittleEndian(end[20..], 0);
        stream.Write(end);
    }

    private void WriteLocalHeader(string name, uint crc, long size)
    {
        if (_entries.Count == ushort.MaxValue)
        {
            throw new CheckpointException(path, "would hold more than 65535 zip entries, which this writer does not support");
        }

        long offset = stream.Position;
        CheckLimit(offset + size);
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        ushort flags = (ushort)(nameBytes.Length != name.Length ? 0x0800 : 0); // bit 11: UTF-8 name
        int padding = (int)((Alignment - (offset + 30 + nameBytes.Length + 4) % Alignment) % Alignment);

        Span<byte> header = stackalloc byte[34];
        BinaryPrimitives.WriteUInt32LittleEndian(header, 0x04034b50);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(header[8..], 0); // stored
        BinaryPrimitives.WriteUInt16LittleEndian(header[10..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(header[12..], DosDate);
        BinaryPrimitives.WriteUInt32LittleEndian(header[14..], crc);
        BinaryPrimitives.WriteUInt32LittleEndian(header[18..], (uint)size);
        BinaryPrimitives.WriteUInt32LittleEndian(header[22..], (uint)size);
        BinaryPrimitives.WriteUInt16LittleEndian(header[26..], (ushort)nameBytes.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(header[28..], (ushort)(4 + padding));
        stream.Write(header[..30]);
        stream.Write(nameBytes);
        BinaryPrimitives.WriteUInt16LittleEndian(header[30..], PaddingFieldId);
        BinaryPrimitives.WriteUInt16LittleEndian(header[32..], (ushort)padding);
        stream.Write(header[30..34]);
        stream.Write(new byte[padding]);
        _entries.Add((nameBytes, flags, crc, (uint)size, (uint)offset));
    }

    private void CheckLimit(long position)
    {
        if (position >= uint.MaxValue)
        {
            throw new CheckpointException(path, "would be larger than 4 GiB, which this writer does not support (no zip64)");
        }
    }
}
