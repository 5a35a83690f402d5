using System.Buffers.Binary;
using System.Text;
using TaH.Checkpoints.Writing;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Engine.Tests.Checkpoints;

public sealed class TorchCheckpointSaveTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly List<torch.Tensor> _tensors = [];

    public void Dispose()
    {
        foreach (var tensor in _tensors)
        {
            tensor.Dispose();
        }

        _dir.Dispose();
    }

    private torch.Tensor Track(torch.Tensor tensor)
    {
        _tensors.Add(tensor);
        return tensor;
    }

    private torch.Tensor Random(torch.ScalarType type, long[] shape, int seed)
    {
        var tensor = Track(torch.empty(shape, type));
        var bytes = new byte[tensor.NumberOfElements * tensor.ElementSize];
        new Random(seed).NextBytes(bytes);
        if (type == torch.ScalarType.Bool)
        {
            for (int i = 0; i < bytes.Length; i++)
            {
                bytes[i] &= 1;
            }
        }

        tensor.bytes = bytes;
        return tensor;
    }

    /// <summary>The pickle record of a saved file, to compare with what Python's pickle module writes.</summary>
    private byte[] PickleOf(object? payload)
    {
        string path = _dir.File("p.bin");
        TorchCheckpointWriter.Save(path, payload);
        return TorchTestFiles.ReadEntry(path, "p/data.pkl");
    }

    // The expected bytes below are pickle.dumps(..., protocol=2) from CPython 3.11.

    [Fact]
    public void IntegersArePickledAsPythonDoes()
    {
        var payload = new List<object?> { 0L, 255L, 256L, 65535L, 65536L, -1L, -256L, 2147483648L, -2147483649L, long.MaxValue, long.MinValue };
        Assert.Equal(
            Convert.FromHexString("80025d7100284b004bff4d00014dffff4a000001004affffffff4a00ffffff8a0500000080008a05ffffff7fff8a08ffffffffffffff7f8a080000000000000080652e"),
            PickleOf(payload));
    }

    [Fact]
    public void StringsFloatsTuplesAndMemoArePickledAsPythonDoes()
    {
        var payload = new PyDict
        {
            ["a"] = 1.5,
            ["b"] = null,
            ["c"] = true,
            ["d"] = new object?[] { 1L, "a" },
            ["e"] = "a",
            ["f"] = new List<object?>(),
            ["g"] = Array.Empty<object?>(),
            ["h"] = new object?[] { 1L, 2L, 3L, 4L },
            ["i"] = "é",
        };
        Assert.Equal(
            Convert.FromHexString("80027d7100285801000000617101473ff800000000000058010000006271024e58010000006371038858010000006471044b0168018671055801000000657106680158010000006671075d7108580100000067710929580100000068710a284b014b024b034b0474710b580100000069710c5802000000c3a9710d752e"),
            PickleOf(payload));
    }

    [Fact]
    public void BytesArePickledAsPythonDoes() =>
        Assert.Equal(
            Convert.FromHexString("80025d710028635f5f6275696c74696e5f5f0a62797465730a710129527102635f636f646563730a656e636f64650a7103580400000000c3bf41710458060000006c6174696e317105867106527107652e"),
            PickleOf(new List<object?> { Array.Empty<byte>(), new byte[] { 0, 0xff, (byte)'A' } }));

    [Fact]
    public void OrderedDictWithAttributesIsPickledAsPythonDoes()
    {
        var ordered = new PyDict(isOrderedDict: true) { ["x"] = 1L };
        ordered.Attributes = new PyDict { ["_metadata"] = new PyDict { ["v"] = 2L } };
        Assert.Equal(
            Convert.FromHexString("800263636f6c6c656374696f6e730a4f726465726564446963740a71002952710158010000007871024b01737d710358090000005f6d6574616461746171047d710558010000007671064b027373622e"),
            PickleOf(ordered));
    }

    [Fact]
    public void EveryKindOfValueRoundTrips()
    {
        var stateDict = new PyDict(isOrderedDict: true);
        foreach (var (type, i) in new[]
                 {
                     torch.ScalarType.Float32, torch.ScalarType.BFloat16, torch.ScalarType.Float16, torch.ScalarType.Float64,
                     torch.ScalarType.Int64, torch.ScalarType.Int32, torch.ScalarType.Int16, torch.ScalarType.Int8,
                     torch.ScalarType.Byte, torch.ScalarType.Bool, torch.ScalarType.ComplexFloat32,
                 }.Select((t, i) => (t, i)))
        {
            stateDict[$"t{i}.{type}"] = Random(type, [2, 3], i);
        }

        stateDict["scalar"] = Random(torch.ScalarType.Float32, [], 50);
        stateDict["empty"] = Random(torch.ScalarType.BFloat16, [0, 7], 51);
        stateDict.Attributes = new PyDict { ["_metadata"] = new PyDict(isOrderedDict: true) { [""] = new PyDict { ["version"] = 1L } } };
        var payload = new PyDict
        {
            ["class"] = "MLPIterDecider",
            ["init_args"] = new PyDict
            {
                ["topk"] = 16L,
                ["hidden_dims"] = new List<object?> { 32L, 48L, 48L },
                ["dropout_rate"] = 0.1,
                ["normalize_input"] = true,
                ["threshold"] = 0.3748,
                ["dtype"] = PyGlobal.ForDtype(torch.ScalarType.BFloat16),
            },
            ["state_dict"] = stateDict,
            ["misc"] = new object?[]
            {
                null, false, -7L, long.MinValue, double.NaN, -0.0, double.PositiveInfinity, "ünïcødé ✓",
                new byte[] { 1, 0, 255 }, Array.Empty<byte>(), new object?[] { 1L }, new object?[] { 1L, 2L, 3L, 4L, 5L },
                new PyObject(new PyGlobal("my.module", "Thing"), ["arg"]) { State = new PyDict { ["k"] = 3L } },
                new PyDict { [7L] = "int key", [new object?[] { 1L, "x" }] = "tuple key" },
            },
        };
        string path = _dir.File("rich.bin");

        TorchCheckpointWriter.Save(path, payload);

        using var loaded = LoadedPayload.Load(path);
        TorchTestFiles.AssertSamePayload(payload, loaded.Value);
    }

    [Fact]
    public void ArchiveLayoutIsWhatTorchWrites()
    {
        var payload = new PyDict
        {
            ["a"] = Random(torch.ScalarType.Float32, [3], 1),
            ["b"] = Random(torch.ScalarType.BFloat16, [5, 1], 2),
        };
        string path = _dir.File("iter_decider.bin");

        TorchCheckpointWriter.Save(path, payload);

        // Walk the local headers by hand: stored entries whose data starts 64-byte aligned.
        byte[] file = File.ReadAllBytes(path);
        var entries = new List<(string Name, byte[] Data)>();
        int offset = 0;
        while (BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(offset)) == 0x04034b50)
        {
            Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(offset + 8))); // stored
            int size = (int)BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(offset + 22));
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(offset + 26));
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(offset + 28));
            int data = offset + 30 + nameLength + extraLength;
            Assert.Equal(0, data % 64);
            entries.Add((Encoding.UTF8.GetString(file, offset + 30, nameLength), file[data..(data + size)]));
            offset = data + size;
        }

        Assert.Equal(0x02014b50u, BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(offset)));
        Assert.Equal(
            ["iter_decider/data.pkl", "iter_decider/byteorder", "iter_decider/data/0", "iter_decider/data/1", "iter_decider/version"],
            entries.Select(e => e.Name));
        Assert.Equal("little", Encoding.ASCII.GetString(entries[1].Data));
        Assert.Equal("3\n", Encoding.ASCII.GetString(entries[4].Data));
        Assert.Equal(TestFiles.BytesOf((torch.Tensor)payload["a"]!), entries[2].Data);
        Assert.Equal(TestFiles.BytesOf((torch.Tensor)payload["b"]!), entries[3].Data);
        Assert.Equal([0x80, 0x02], entries[0].Data[..2]);
        Assert.Equal((byte)'.', entries[0].Data[^1]);
    }

    [Fact]
    public void ZipChecksumIsTheStandardCrc32() =>
        Assert.Equal(0xCBF43926u, Crc32.Append(0, "123456789"u8));

    [Fact]
    public void SharedTensorIsStoredOnceAndLoadsAsOneObject()
    {
        var tied = Random(torch.ScalarType.Float32, [4, 2], 3);
        string path = _dir.File("tied.bin");

        TorchCheckpointWriter.Save(path, new List<object?> { tied, tied });

        using var loaded = LoadedPayload.Load(path);
        var list = Assert.IsType<List<object?>>(loaded.Value);
        Assert.Same(list[0], list[1]);
        Assert.Equal(TestFiles.BytesOf(tied), TestFiles.BytesOf((torch.Tensor)list[0]!));
        Assert.Throws<InvalidOperationException>(() => TorchTestFiles.ReadEntry(path, "tied/data/1"));
    }

    [Fact]
    public void NonContiguousTensorIsSavedByValue()
    {
        var source = Random(torch.ScalarType.Float32, [3, 5], 4);
        var columns = Track(source.narrow(1, 1, 3).t());
        using var expected = columns.contiguous();
        string path = _dir.File("view.bin");

        TorchCheckpointWriter.Save(path, columns);

        using var loaded = LoadedPayload.Load(path);
        var tensor = Assert.IsAssignableFrom<torch.Tensor>(loaded.Value);
        Assert.Equal([3L, 3L], tensor.shape);
        Assert.Equal(TestFiles.BytesOf(expected), TestFiles.BytesOf(tensor));
    }

    [Fact]
    public void UnsupportedValueIsRefusedWithoutWritingAFile()
    {
        string path = _dir.File("bad.bin");
        Assert.Throws<ArgumentException>(() => TorchCheckpointWriter.Save(path, new PyDict { ["x"] = new DateTime(2020, 1, 1) }));
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(_dir.Path));
    }

    [Fact]
    public void SaveReplacesAnExistingFile()
    {
        string path = _dir.File("again.bin");
        TorchCheckpointWriter.Save(path, "first");
        TorchCheckpointWriter.Save(path, 2L);
        Assert.Equal(2L, TorchCheckpoint.Load(path));
        Assert.Single(Directory.GetFiles(_dir.Path));
    }
}
