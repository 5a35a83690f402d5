using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Engine.Tests.Checkpoints;

/// <summary>Builds pickle streams opcode by opcode, written by hand from the pickle format.</summary>
internal sealed class PickleBuilder
{
    private readonly List<byte> _bytes = [];

    public PickleBuilder Op(params byte[] bytes)
    {
        _bytes.AddRange(bytes);
        return this;
    }

    public PickleBuilder Op(char op, params byte[] args) => Op((byte)op).Op(args);

    public PickleBuilder Proto(byte version) => Op(0x80, version);

    public PickleBuilder Mark() => Op('(');

    public PickleBuilder Str(string text)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        var length = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(length, utf8.Length);
        return Op((byte)'X').Op(length).Op(utf8);
    }

    public PickleBuilder Int(int value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, value);
        return Op((byte)'J').Op(bytes);
    }

    public PickleBuilder Global(string module, string name) => Op('c').Op(Encoding.ASCII.GetBytes($"{module}\n{name}\n"));

    /// <summary>('storage', torch.&lt;cls&gt;, key, 'cpu', numel) BINPERSID</summary>
    public PickleBuilder Storage(string storageClass, string key, int numel) =>
        Mark().Str("storage").Global("torch", storageClass).Str(key).Str("cpu").Int(numel).Op('t').Op('Q');

    public PickleBuilder IntTuple(params int[] values)
    {
        Mark();
        foreach (int v in values)
        {
            Int(v);
        }

        return Op('t');
    }

    /// <summary>_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())</summary>
    public PickleBuilder Tensor(string storageClass, string key, int numel, int offset, int[] size, int[] stride) =>
        Global("torch._utils", "_rebuild_tensor_v2").Mark()
            .Storage(storageClass, key, numel).Int(offset).IntTuple(size).IntTuple(stride)
            .Op(0x89).Global("collections", "OrderedDict").Op(')').Op('R')
            .Op('t').Op('R');

    public byte[] ToArray() => [.. _bytes];
}

internal static class TorchTestFiles
{
    /// <summary>Writes a torch.save-style zip with the given pickle and storage records.</summary>
    public static string WriteZip(string path, byte[] pickle, IReadOnlyDictionary<string, byte[]>? storages = null,
        string archive = "archive", CompressionLevel level = CompressionLevel.NoCompression, string? byteOrder = "little")
    {
        using var stream = File.Create(path);
        using var zip = new ZipArchive(stream, ZipArchiveMode.Create);
        Add(zip, $"{archive}/data.pkl", pickle, level);
        if (byteOrder is not null)
        {
            Add(zip, $"{archive}/byteorder", Encoding.ASCII.GetBytes(byteOrder), level);
        }

        foreach (var (key, data) in storages ?? new Dictionary<string, byte[]>())
        {
            Add(zip, $"{archive}/data/{key}", data, level);
        }

        Add(zip, $"{archive}/version", "3\n"u8.ToArray(), level);
        return path;
    }

    private static void Add(ZipArchive zip, string name, byte[] data, CompressionLevel level)
    {
        using var entry = zip.CreateEntry(name, level).Open();
        entry.Write(data);
    }

    public static byte[] Floats(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), values[i]);
        }

        return bytes;
    }

    public static byte[] ReadEntry(string zipPath, string name)
    {
        using var zip = ZipFile.OpenRead(zipPath);
        var entry = zip.GetEntry(name) ?? throw new InvalidOperationException($"{name} not in {zipPath}");
        using var stream = entry.Open();
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>Asserts two payloads are equal: same structure, same order, tensors bit for bit.</summary>
    public static void AssertSamePayload(object? expected, object? actual, string where = "payload")
    {
        switch (expected)
        {
            case null:
                Assert.Null(actual);
                break;
            case torch.Tensor e:
                var a = Assert.IsAssignableFrom<torch.Tensor>(actual);
                Assert.Equal(e.dtype, a.dtype);
                Assert.Equal(e.shape, a.shape);
                using (var ec = e.contiguous())
                {
                    Assert.Equal(TestFiles.BytesOf(ec), TestFiles.BytesOf(a));
                }

                break;
            case PyDict e:
                var ad = Assert.IsType<PyDict>(actual);
                Assert.Equal(e.IsOrderedDict, ad.IsOrderedDict);
                Assert.Equal(e.Keys, ad.Keys);
                for (int i = 0; i < e.Count; i++)
                {
                    AssertSamePayload(e.Values[i], ad.Values[i], $"{where}[{e.Keys[i]}]");
                }

                AssertSamePayload(e.Attributes, ad.Attributes, where + ".attributes");
                break;
            case List<object?> e:
                var al = Assert.IsType<List<object?>>(actual);
                Assert.Equal(e.Count, al.Count);
                for (int i = 0; i < e.Count; i++)
                {
                    AssertSamePayload(e[i], al[i], $"{where}[{i}]");
                }

                break;
            case object?[] e:
                var at = Assert.IsType<object?[]>(actual);
                Assert.Equal(e.Length, at.Length);
                for (int i = 0; i < e.Length; i++)
                {
                    AssertSamePayload(e[i], at[i], $"{where}[{i}]");
                }

                break;
            case PyObject e:
                var ao = Assert.IsType<PyObject>(actual);
                Assert.Equal(e.Type, ao.Type);
                AssertSamePayload(e.Args, ao.Args, where + ".args");
                AssertSamePayload(e.State, ao.State, where + ".state");
                AssertSamePayload(e.ListItems, ao.ListItems, where + ".items");
                AssertSamePayload(e.DictItems, ao.DictItems, where + ".dictitems");
                break;
            case double e:
                Assert.Equal(BitConverter.DoubleToInt64Bits(e), BitConverter.DoubleToInt64Bits(Assert.IsType<double>(actual)));
                break;
            default:
                Assert.Equal(expected, actual);
                break;
        }
    }

    /// <summary>Every tensor in a payload, each once.</summary>
    public static List<torch.Tensor> Tensors(object? payload)
    {
        var found = new List<torch.Tensor>();
        var seen = new HashSet<object>(ReferenceEqualityComparer.Instance);
        void Walk(object? value)
        {
            if (value is null || value is string || !seen.Add(value))
            {
                return;
            }

            switch (value)
            {
                case torch.Tensor t:
                    found.Add(t);
                    break;
                case PyDict d:
                    foreach (var item in d.Values)
                    {
                        Walk(item);
                    }

                    Walk(d.Attributes);
                    break;
                case List<object?> l:
                    l.ForEach(Walk);
                    break;
                case object?[] t:
                    Array.ForEach(t, Walk);
                    break;
                case PyObject o:
                    Walk(o.Args);
                    Walk(o.State);
                    Walk(o.ListItems);
                    Walk(o.DictItems);
                    break;
            }
        }

        Walk(payload);
        return found;
    }
}

/// <summary>A loaded payload whose tensors are disposed with it.</summary>
internal sealed class LoadedPayload(object? value) : IDisposable
{
    public object? Value { get; } = value;

    public PyDict Dict => Assert.IsType<PyDict>(Value);

    public static LoadedPayload Load(string path) => new(TorchCheckpoint.Load(path));

    public void Dispose()
    {
        foreach (var tensor in TorchTestFiles.Tensors(Value))
        {
            tensor.Dispose();
        }
    }
}
