using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TaH.Checkpoints.Writing;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Engine.Tests.Checkpoints;

public sealed class SafeTensorsRoundTripTests : IDisposable
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

    /// <summary>A tensor of the given type filled with random bytes (bools get 0 or 1).</summary>
    private torch.Tensor Random(torch.ScalarType type, long[] shape, int seed)
    {
        var tensor = torch.empty(shape, type);
        _tensors.Add(tensor);
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

    private static readonly (string Name, torch.ScalarType Type)[] AllTypes =
    [
        ("F32", torch.ScalarType.Float32), ("F16", torch.ScalarType.Float16), ("BF16", torch.ScalarType.BFloat16),
        ("F64", torch.ScalarType.Float64), ("I64", torch.ScalarType.Int64), ("I32", torch.ScalarType.Int32),
        ("I16", torch.ScalarType.Int16), ("I8", torch.ScalarType.Int8), ("U8", torch.ScalarType.Byte),
        ("BOOL", torch.ScalarType.Bool),
    ];

    [Fact]
    public void EveryDtypeRoundTripsBitExactly()
    {
        var tensors = AllTypes
            .Select((t, i) => KeyValuePair.Create($"t.{t.Name}", Random(t.Type, [3, 5, 2], i)))
            .Append(KeyValuePair.Create("scalar", Random(torch.ScalarType.Float32, [], 99)))
            .Append(KeyValuePair.Create("empty", Random(torch.ScalarType.BFloat16, [0, 4], 98)))
            .ToList();
        string path = _dir.File("all.safetensors");
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode" };

        SafeTensorsWriter.Write(path, tensors, metadata);

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(tensors.Select(t => t.Key), file.Names);
        Assert.Equal(metadata, file.Metadata);
        foreach (var (name, original) in tensors)
        {
            using var loaded = file.Load(name);
            Assert.Equal(original.dtype, loaded.dtype);
            Assert.Equal(original.shape, loaded.shape);
            Assert.Equal(TestFiles.BytesOf(original), TestFiles.BytesOf(loaded));
        }

        foreach (var (name, type) in AllTypes)
        {
            Assert.Equal(name, file.Info($"t.{name}").DType);
            Assert.Equal(type, file.Info($"t.{name}").ScalarType);
        }
    }

    [Fact]
    public void FileLayoutFollowsTheFormat()
    {
        var a = Random(torch.ScalarType.Float32, [2, 3], 1);
        var b = Random(torch.ScalarType.Int16, [5], 2);
        string path = _dir.File("layout.safetensors");

        SafeTensorsWriter.Write(path, [KeyValuePair.Create("a", a), KeyValuePair.Create("b", b)]);

        byte[] all = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(all);
        Assert.Equal(0, headerLength % 8);
        string header = Encoding.UTF8.GetString(all, 8, (int)headerLength);
        Assert.Equal(header.TrimEnd(' '), header.TrimEnd(' ').Trim());
        using var json = JsonDocument.Parse(header);
        Assert.Equal("F32", json.RootElement.GetProperty("a").GetProperty("dtype").GetString());
        Assert.Equal("[0,24]", json.RootElement.GetProperty("a").GetProperty("data_offsets").GetRawText());
        Assert.Equal("[24,34]", json.RootElement.GetProperty("b").GetProperty("data_offsets").GetRawText());
        Assert.Equal("[5]", json.RootElement.GetProperty("b").GetProperty("shape").GetRawText());
        Assert.False(json.RootElement.TryGetProperty("__metadata__", out _));
        Assert.Equal(8 + headerLength + 34, all.Length);
        Assert.Equal(TestFiles.BytesOf(a), all[(int)(8 + headerLength)..(int)(8 + headerLength + 24)]);
        Assert.Equal(TestFiles.BytesOf(b), all[(int)(8 + headerLength + 24)..]);
    }

    [Fact]
    public void NonContiguousTensorIsWrittenInLogicalOrder()
    {
        var source = Random(torch.ScalarType.Float32, [3, 4], 3);
        using var transposed = source.t();
        using var expected = transposed.contiguous();
        string path = _dir.File("t.safetensors");

        SafeTensorsWriter.Write(path, [KeyValuePair.Create("t", transposed)]);

        using var checkpoint = SafeTensorsCheckpoint.OpenFile(path);
        using var loaded = checkpoint.Load("t");
        Assert.Equal([4L, 3L], loaded.shape);
        Assert.Equal(TestFiles.BytesOf(expected), TestFiles.BytesOf(loaded));
    }

    [Fact]
    public void ConversionOnLoadMatchesTorchConversion()
    {
        var half = Random(torch.ScalarType.Float16, [4, 4], 4);
        using var expected = half.to(torch.ScalarType.Float32);
        string path = _dir.File("h.safetensors");
        SafeTensorsWriter.Write(path, [KeyValuePair.Create("h", half)]);

        using var file = SafeTensorsFile.Open(path);
        using var loaded = file.Load("h", torch.ScalarType.Float32);

        Assert.Equal(torch.ScalarType.Float32, loaded.dtype);
        Assert.Equal(TestFiles.BytesOf(expected), TestFiles.BytesOf(loaded));
    }

    [Fact]
    public void ShardedWriteSplitsByBytesAndReadsBack()
    {
        // 6 tensors of 400 bytes with a 1000-byte limit: 2 per shard, 3 shards.
        (torch.ScalarType Type, long[] Shape)[] specs =
        [
            (torch.ScalarType.Float32, [100]), (torch.ScalarType.BFloat16, [200]), (torch.ScalarType.Float64, [50]),
            (torch.ScalarType.Int16, [200]), (torch.ScalarType.Byte, [400]), (torch.ScalarType.Float32, [10, 10]),
        ];
        var tensors = specs
            .Select((s, i) => KeyValuePair.Create($"layer.{i}.weight", Random(s.Type, s.Shape, 10 + i)))
            .ToList();
        Assert.All(tensors, t => Assert.Equal(400, t.Value.NumberOfElements * t.Value.ElementSize));
        string dir = Path.Combine(_dir.Path, "model");

        var shards = SafeTensorsWriter.WriteSharded(dir, tensors, 1000, new Dictionary<string, string> { ["format"] = "pt" });

        Assert.Equal(
            ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"],
            shards.Select(Path.GetFileName));
        var index = TestFiles.ReadJson(Path.Combine(dir, "model.safetensors.index.json"));
        Assert.Equal(2400, index.GetProperty("metadata").GetProperty("total_size").GetInt64());
        Assert.Equal("model-00002-of-00003.safetensors", index.GetProperty("weight_map").GetProperty("layer.3.weight").GetString());
        Assert.False(File.Exists(Path.Combine(dir, "model.safetensors")));

        using var checkpoint = SafeTensorsCheckpoint.OpenDirectory(dir);
        Assert.Equal(3, checkpoint.Files.Count);
        Assert.Equal(tensors.Select(t => t.Key).Order(), checkpoint.Names.Order());
        foreach (var (name, original) in tensors)
        {
            using var loaded = checkpoint.Load(name);
            Assert.Equal(original.dtype, loaded.dtype);
            Assert.Equal(TestFiles.BytesOf(original), TestFiles.BytesOf(loaded));
        }
    }

    [Fact]
    public void TensorLargerThanTheShardLimitGetsItsOwnShard()
    {
        var small = Random(torch.ScalarType.Float32, [10], 20);
        var big = Random(torch.ScalarType.Float32, [100], 21);
        string dir = Path.Combine(_dir.Path, "big");

        var shards = SafeTensorsWriter.WriteSharded(dir,
            [KeyValuePair.Create("small", small), KeyValuePair.Create("big", big), KeyValuePair.Create("small2", small)], 100);

        Assert.Equal(3, shards.Count);
        using var checkpoint = SafeTensorsCheckpoint.OpenDirectory(dir);
        using var loaded = checkpoint.Load("big");
        Assert.Equal(TestFiles.BytesOf(big), TestFiles.BytesOf(loaded));
    }

    [Fact]
    public void ChunkedReadsAndWritesCoverEveryByte()
    {
        // Real tensors over 2 GiB are too big for a test; small chunks take the same path.
        var source = Random(torch.ScalarType.BFloat16, [37, 3], 30);
        string path = _dir.File("chunks.bin");
        using (var stream = File.Create(path))
        {
            stream.Write([1, 2, 3]);
            TensorBytesWriter.WriteToStream(stream, source, chunkBytes: 10);
        }

        byte[] written = File.ReadAllBytes(path);
        Assert.Equal(TestFiles.BytesOf(source), written[3..]);

        using var fromFile = torch.empty([37, 3], torch.ScalarType.BFloat16);
        using (var handle = File.OpenHandle(path))
        {
            TensorBytes.ReadFromFile(handle, 3, fromFile, path, chunkBytes: 7);
        }

        using var fromStream = torch.empty([37, 3], torch.ScalarType.BFloat16);
        using (var stream = new MemoryStream(written, 3, written.Length - 3))
        {
            TensorBytes.ReadFromStream(stream, fromStream, chunkBytes: 16);
        }

        Assert.Equal(TestFiles.BytesOf(source), TestFiles.BytesOf(fromFile));
        Assert.Equal(TestFiles.BytesOf(source), TestFiles.BytesOf(fromStream));
    }

    [Fact]
    public void WriterRejectsDuplicateNames()
    {
        var t = Random(torch.ScalarType.Float32, [1], 40);
        Assert.Throws<ArgumentException>(() =>
            SafeTensorsWriter.Write(_dir.File("dup.safetensors"), [KeyValuePair.Create("x", t), KeyValuePair.Create("x", t)]));
        Assert.False(File.Exists(_dir.File("dup.safetensors")));
    }
}
