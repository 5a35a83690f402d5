using System.Buffers.Binary;
using System.IO.Compression;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Engine.Tests.Checkpoints;

/// <summary>torch.save files built by hand, opcode by opcode, to reach what the fixtures do not.</summary>
public sealed class TorchCheckpointPickleTests : IDisposable
{
    private static readonly byte[] Twelve = TorchTestFiles.Floats(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Zip(string name, PickleBuilder pickle, Dictionary<string, byte[]>? storages = null,
        CompressionLevel level = CompressionLevel.NoCompression, string? byteOrder = "little") =>
        TorchTestFiles.WriteZip(_dir.File(name), pickle.ToArray(), storages, "some_archive", level, byteOrder);

    private static float[] Values(torch.Tensor t) => t.data<float>().ToArray();

    [Theory]
    [InlineData(CompressionLevel.NoCompression)]
    [InlineData(CompressionLevel.Optimal)]
    public void StridesOffsetsAndSharedStoragesAreMaterialised(CompressionLevel level)
    {
        // One 12-float storage seen four ways: a transposed view at offset 1, the whole storage
        // (twice) and a contiguous slice at offset 6.
        var pickle = new PickleBuilder().Proto(2).Op(']').Mark()
            .Tensor("FloatStorage", "0", 12, 1, [3, 2], [1, 3])
            .Tensor("FloatStorage", "0", 12, 0, [12], [1])
            .Tensor("FloatStorage", "0", 12, 0, [12], [1])
            .Tensor("FloatStorage", "0", 12, 6, [2, 3], [3, 1])
            .Op('e').Op('.');
        string path = Zip("strided.pt", pickle, new() { ["0"] = Twelve }, level);

        using var payload = LoadedPayload.Load(path);
        var list = Assert.IsType<List<object?>>(payload.Value);
        var transposed = (torch.Tensor)list[0]!;
        var whole = (torch.Tensor)list[1]!;
        var wholeAgain = (torch.Tensor)list[2]!;
        var slice = (torch.Tensor)list[3]!;

        Assert.Equal([3L, 2L], transposed.shape);
        Assert.Equal([1f, 4f, 2f, 5f, 3f, 6f], Values(transposed));
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (float)i), Values(whole));
        Assert.Equal([6f, 7f, 8f, 9f, 10f, 11f], Values(slice));
        Assert.All(new[] { transposed, whole, wholeAgain, slice }, t => Assert.True(t.is_contiguous()));

        // Each tensor owns its values, as torch.load's separate tensors would after a copy.
        whole.fill_(-1);
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (float)i), Values(wholeAgain));
        Assert.Equal([6f, 7f, 8f, 9f, 10f, 11f], Values(slice));
        Assert.Equal([1f, 4f, 2f, 5f, 3f, 6f], Values(transposed));
    }

    [Fact]
    public void Bf16ParameterAndUntypedStorageAreRead()
    {
        byte[] bf16 = [0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40]; // 1.0, -2.0, 3.140625
        var pickle = new PickleBuilder().Proto(2).Op('}')
            .Str("p").Global("torch._utils", "_rebuild_parameter")
            .Tensor("BFloat16Storage", "0", 3, 0, [3], [1]).Op(0x88).Global("collections", "OrderedDict").Op(')').Op('R')
            .Op(0x87).Op('R').Op('s')
            .Str("u").Tensor("UntypedStorage", "1", 4, 0, [2, 2], [2, 1]).Op('s')
            .Op('.');
        string path = Zip("bf16.pt", pickle, new() { ["0"] = bf16, ["1"] = [1, 2, 3, 250] });

        using var payload = LoadedPayload.Load(path);
        var p = (torch.Tensor)payload.Dict["p"]!;
        var u = (torch.Tensor)payload.Dict["u"]!;

        Assert.Equal(torch.ScalarType.BFloat16, p.dtype);
        Assert.Equal(bf16, TestFiles.BytesOf(p));
        using var widened = p.to(torch.ScalarType.Float32);
        Assert.Equal([1f, -2f, 3.140625f], Values(widened));
        Assert.Equal(torch.ScalarType.Byte, u.dtype);
        Assert.Equal(new byte[] { 1, 2, 3, 250 }, TestFiles.BytesOf(u));
    }

    [Fact]
    public void TensorSubclassAndBareStorageBecomeTensors()
    {
        // _rebuild_from_type_v2(_rebuild_tensor_v2, Parameter, (storage, ...), {}) and a storage on its own.
        var pickle = new PickleBuilder().Proto(2)
            .Global("torch._tensor", "_rebuild_from_type_v2")
            .Mark().Global("torch._utils", "_rebuild_tensor_v2").Global("torch.nn.parameter", "Parameter")
            .Mark().Storage("FloatStorage", "0", 12).Int(2).IntTuple(2).IntTuple(1).Op(0x89)
            .Global("collections", "OrderedDict").Op(')').Op('R').Op('t')
            .Op('}').Op('t').Op('R')
            .Storage("FloatStorage", "0", 12)
            .Op(0x86).Op('.');
        string path = Zip("subclass.pt", pickle, new() { ["0"] = Twelve });

        using var payload = LoadedPayload.Load(path);
        var pair = Assert.IsType<object?[]>(payload.Value);
        Assert.Equal([2f, 3f], Values(Assert.IsAssignableFrom<torch.Tensor>(pair[0])));
        var storage = Assert.IsAssignableFrom<torch.Tensor>(pair[1]);
        Assert.Equal([12L], storage.shape);
        Assert.Equal(Twelve, TestFiles.BytesOf(storage));
    }

    [Fact]
    public void NewerProtocolOpcodesAreUnderstood()
    {
        var longBytes = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(longBytes, -1234567890123L);
        var pickle = new PickleBuilder().Proto(4).Op(0x95, 0, 0, 0, 0, 0, 0, 0, 0) // FRAME
            .Op(0x8c, 1, (byte)'c').Op(0x94) // SHORT_BINUNICODE 'c', MEMOIZE -> memo 0
            .Op(0x8c, 5).Op("torch"u8.ToArray()).Op(0x8c, 8).Op("bfloat16"u8.ToArray()).Op(0x93) // STACK_GLOBAL
            .Op(0x8c, 11).Op("collections"u8.ToArray()).Op(0x8c, 11).Op("OrderedDict"u8.ToArray()).Op(0x93)
            .Op(')').Op(0x81) // NEWOBJ OrderedDict()
            .Op(0x8c, 1, (byte)'k').Op(0x8a, 8).Op(longBytes).Op('s') // LONG1
            .Op(0x8c, 1, (byte)'n').Op(0x8a, 0).Op('s')
            .Op(0x8c, 1, (byte)'x').Op(0x8a, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff).Op('s') // -1 in 9 bytes
            .Op(0x8c, 1, (byte)'b').Op('C', 2, 7, 8).Op('s') // SHORT_BINBYTES
            .Op(0x8c, 1, (byte)'s').Op(0x8f).Mark().Op('K', 3).Op('K', 4).Op(0x90).Op('s') // EMPTY_SET, ADDITEMS
            .Op(0x8c, 1, (byte)'u').Op(0x8d, 2, 0, 0, 0, 0, 0, 0, 0).Op(0xc3, 0xa9).Op('s') // BINUNICODE8 'é'
            .Op(0x8c, 1, (byte)'m').Op('h', 0).Op('s') // BINGET 0
            .Op(0x8c, 1, (byte)'f').Op('G', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0).Op('s') // BINFLOAT 1.5
            .Op(0x8c, 1, (byte)'t').Op('K', 1).Op('M', 0x10, 0x27).Op(0x86).Op('s') // (1, 10000)
            .Op(0x87).Op('.');
        string path = Zip("proto4.pt", pickle);

        using var payload = LoadedPayload.Load(path);
        var outer = Assert.IsType<object?[]>(payload.Value);
        Assert.Equal(3, outer.Length);
        Assert.Equal("c", outer[0]);
        Assert.Equal(new PyGlobal("torch", "bfloat16"), outer[1]);
        Assert.True(((PyGlobal)outer[1]!).TryGetDtype(out var dtype));
        Assert.Equal(torch.ScalarType.BFloat16, dtype);
        var dict = Assert.IsType<PyDict>(outer[2]);
        Assert.True(dict.IsOrderedDict);
        Assert.Equal(["k", "n", "x", "b", "s", "u", "m", "f", "t"], dict.Keys);
        Assert.Equal(-1234567890123L, dict["k"]);
        Assert.Equal(0L, dict["n"]);
        Assert.Equal(-1L, dict["x"]);
        Assert.Equal(new byte[] { 7, 8 }, dict["b"]);
        var set = Assert.IsType<PyObject>(dict["s"]);
        Assert.Equal("set", set.Type.Name);
        Assert.Equal([3L, 4L], Assert.IsType<List<object?>>(Assert.Single(set.Args)));
        Assert.Equal("é", dict["u"]);
        Assert.Equal("c", dict["m"]);
        Assert.Equal(1.5, dict["f"]);
        Assert.Equal([1L, 10000L], Assert.IsType<object?[]>(dict["t"]));
    }

    [Fact]
    public void Protocol2BytesAndUnknownObjectsAreKept()
    {
        var pickle = new PickleBuilder().Proto(2).Op(']').Mark()
            .Global("_codecs", "encode").Str("\u00ff\u0001A").Str("latin1").Op(0x86).Op('R')
            .Global("__builtin__", "bytes").Op(')').Op('R')
            .Global("my.module", "Thing").Op('K', 5).Op(0x85).Op('R').Op('}').Str("a").Op('K', 1).Op('s').Op('b')
            .Op('e').Op('.');
        string path = Zip("objects.pt", pickle);

        using var payload = LoadedPayload.Load(path);
        var list = Assert.IsType<List<object?>>(payload.Value);
        Assert.Equal(new byte[] { 0xff, 1, (byte)'A' }, list[0]);
        Assert.Equal(Array.Empty<byte>(), list[1]);
        var thing = Assert.IsType<PyObject>(list[2]);
        Assert.Equal(new PyGlobal("my.module", "Thing"), thing.Type);
        Assert.Equal([5L], thing.Args);
        Assert.Equal(1L, Assert.IsType<PyDict>(thing.State)["a"]);
    }

    [Fact]
    public void DictKeysCompareLikePython()
    {
        var dict = new PyDict { [1L] = "one", ["1"] = "text", [new object?[] { 1L, "a" }] = "tuple" };
        Assert.Equal("one", dict[true]);
        Assert.Equal("one", dict[1.0]);
        Assert.Equal("text", dict["1"]);
        Assert.Equal("tuple", dict[new object?[] { 1L, "a" }]);
        dict[1.0] = "replaced";
        Assert.Equal(3, dict.Count);
        Assert.Equal("replaced", dict[1L]);
        Assert.False(dict.ContainsKey(2L));
    }

    private void LoadFails(string path, string phrase) =>
        TestFiles.AssertFails(() => TorchCheckpoint.Load(path), Path.GetFileName(path), phrase);

    [Fact]
    public void MissingFile() => LoadFails(_dir.File("absent.pt"), "file not found");

    [Fact]
    public void NotAZip()
    {
        string path = _dir.File("random.pt");
        File.WriteAllBytes(path, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        LoadFails(path, "is not a readable zip archive");
    }

    [Fact]
    public void LegacyFormat()
    {
        string path = _dir.File("legacy.pt");
        File.WriteAllBytes(path, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
        LoadFails(path, "legacy torch.save format");
    }

    [Fact]
    public void ZipWithoutPickle()
    {
        string path = _dir.File("nopickle.pt");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            zip.CreateEntry("archive/version");
        }

        LoadFails(path, "without a data.pkl record");
    }

    [Fact]
    public void BigEndianStorages() =>
        LoadFails(Zip("big.pt", new PickleBuilder().Proto(2).Op('N').Op('.'), byteOrder: "big"), "'big' byte order");

    [Fact]
    public void MissingStorageRecord() =>
        LoadFails(Zip("nodata.pt", new PickleBuilder().Proto(2).Tensor("FloatStorage", "0", 12, 0, [12], [1]).Op('.')),
            "storage record 'some_archive/data/0' is missing");

    [Fact]
    public void StorageRecordShorterThanItsElementCount() =>
        LoadFails(Zip("short.pt", new PickleBuilder().Proto(2).Tensor("FloatStorage", "0", 12, 0, [12], [1]).Op('.'),
                new() { ["0"] = new byte[40] }),
            "storage record 'some_archive/data/0' holds 40 bytes, but the checkpoint says it has 12 elements of Float32 (48 bytes)");

    [Fact]
    public void TensorReachingPastItsStorage() =>
        LoadFails(Zip("past.pt", new PickleBuilder().Proto(2).Tensor("FloatStorage", "0", 12, 10, [5], [1]).Op('.'),
                new() { ["0"] = Twelve }),
            "needs 15 elements, but its storage '0' has only 12");

    [Fact]
    public void UnsupportedStorageType() =>
        LoadFails(Zip("f8.pt", new PickleBuilder().Proto(2).Tensor("Float8_e4m3fnStorage", "0", 1, 0, [1], [1]).Op('.'),
                new() { ["0"] = [0] }),
            "storage type torch.Float8_e4m3fnStorage, which is not supported");

    [Theory]
    [InlineData(new byte[] { 0x80, 2, 0xff }, "unknown or unsupported pickle opcode 0xFF")]
    [InlineData(new byte[] { 0x80, 2, (byte)'N' }, "ends unexpectedly")]
    [InlineData(new byte[] { 0x80, 2, (byte)'X', 9, 0, 0, 0, (byte)'a', (byte)'.' }, "announces 9 bytes, but only 2 follow")]
    [InlineData(new byte[] { 0x80, 2, (byte)'h', 5, (byte)'.' }, "memo entry 5 is used before it is stored")]
    [InlineData(new byte[] { 0x80, 2, (byte)'K', 1, 0x86, (byte)'.' }, "the pickle stack is empty")]
    [InlineData(new byte[] { 0x80, 2, (byte)'e', (byte)'.' }, "needs a MARK")]
    [InlineData(new byte[] { 0x80, 2, (byte)'K', 1, (byte)'K', 2, (byte)'a', (byte)'.' }, "items are appended to an int, not a list")]
    [InlineData(new byte[] { 0x80, 2, 0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, (byte)'.' }, "does not fit in 64 bits")]
    [InlineData(new byte[] { 0x80, 6, (byte)'N', (byte)'.' }, "pickle protocol 6 is not supported")]
    [InlineData(new byte[] { 0x80, 2, (byte)'N', (byte)')', (byte)'R', (byte)'.' }, "a call to None, which is not a class or function")]
    [InlineData(new byte[] { 0x80, 2, (byte)'K', 1, (byte)'Q', (byte)'.' }, "refers to a persistent object that is not a tensor storage")]
    public void CorruptPickle(byte[] pickle, string phrase) =>
        LoadFails(TorchTestFiles.WriteZip(_dir.File("corrupt.pt"), pickle), phrase);

    [Fact]
    public void DamagedRecordFailsTheChecksum()
    {
        var pickle = new PickleBuilder().Proto(2).Tensor("FloatStorage", "0", 12, 0, [12], [1]).Op('.');
        string path = Zip("damaged.pt", pickle, new() { ["0"] = Twelve });
        byte[] file = File.ReadAllBytes(path);
        int at = file.AsSpan().IndexOf(Twelve.AsSpan(8, 8));
        file[at] ^= 0x40;
        File.WriteAllBytes(path, file);

        LoadFails(path, "record 'some_archive/data/0' is damaged: its CRC-32 is");

        file[at] ^= 0x40;
        file[file.AsSpan().IndexOf("storage"u8)] = (byte)'S';
        File.WriteAllBytes(path, file);
        LoadFails(path, "record 'some_archive/data.pkl' is damaged");
    }
}
