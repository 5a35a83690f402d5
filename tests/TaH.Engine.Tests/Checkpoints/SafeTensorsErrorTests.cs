using System.Buffers.Binary;
using System.Text;
using TaH.Checkpoints.Writing;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Engine.Tests.Checkpoints;

public sealed class SafeTensorsErrorTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Writes a file with the given header text and <paramref name="dataBytes"/> zero bytes of data.</summary>
    private string WriteRaw(string name, string header, int dataBytes, ulong? declaredLength = null)
    {
        byte[] headerBytes = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + headerBytes.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, declaredLength ?? (ulong)headerBytes.Length);
        headerBytes.CopyTo(file, 8);
        string path = _dir.File(name);
        File.WriteAllBytes(path, file);
        return path;
    }

    private static void OpenFails(string path, string phrase) =>
        TestFiles.AssertFails(() => SafeTensorsFile.Open(path).Dispose(), Path.GetFileName(path), phrase);

    [Fact]
    public void MissingFile() => OpenFails(_dir.File("absent.safetensors"), "file not found");

    [Fact]
    public void DirectoryWithoutWeights()
    {
        string dir = Path.Combine(_dir.Path, "empty-model");
        Directory.CreateDirectory(dir);
        TestFiles.AssertFails(() => SafeTensorsCheckpoint.OpenDirectory(dir).Dispose(), "empty-model",
            "contains neither model.safetensors nor model.safetensors.index.json");
        TestFiles.AssertFails(() => SafeTensorsCheckpoint.OpenDirectory(dir + "-absent").Dispose(), "empty-model-absent",
            "directory not found");
    }

    [Fact]
    public void FileShorterThanTheLengthField()
    {
        string path = _dir.File("short.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        OpenFails(path, "is too short to be a safetensors file (3 bytes");
    }

    [Fact]
    public void HeaderLengthBeyondTheFile() =>
        OpenFails(WriteRaw("long.safetensors", "{}", 0, declaredLength: 1000), "header length 1000 goes beyond the end of the file");

    [Fact]
    public void HeaderNotJson() => OpenFails(WriteRaw("json.safetensors", "{\"a\": {", 0), "header is not valid JSON");

    [Fact]
    public void HeaderNotAnObject() => OpenFails(WriteRaw("array.safetensors", "[1, 2]  ", 0), "header is not a JSON object");

    [Theory]
    [InlineData("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "tensor 'w' has no \"dtype\" string")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", "tensor 'w' has no \"shape\" array")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", "tensor 'w' has no \"data_offsets\" array")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "tensor 'w' has a shape that is not a list of non-negative integers")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "tensor 'w' has data_offsets [8,0], which is not a [begin, end] pair")]
    [InlineData("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", "tensor 'w' has dtype 'F8_E4M3', which is not supported")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "tensor 'w' has data_offsets [0, 16] outside the data area, which is 8 bytes")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "covering 8 bytes, but shape [3] of F32 needs 12 bytes")]
    [InlineData("{\"w\":7}", "header entry for tensor 'w' is not a JSON object")]
    [InlineData("{\"__metadata__\":{\"n\":1}}", "__metadata__ entry 'n' is not a string")]
    public void BadHeaderEntry(string header, string phrase) => OpenFails(WriteRaw("entry.safetensors", header, 8), phrase);

    [Fact]
    public void UnknownTensorNameIsNamed()
    {
        using var checkpoint = SafeTensorsCheckpoint.OpenDirectory(TestFiles.Fixture("a"));
        TestFiles.AssertFails(() => checkpoint.Load("lm_head.weight").Dispose(), "tah-tiny", "has no tensor named 'lm_head.weight'");
        TestFiles.AssertFails(() => checkpoint.Info("nope"), "tah-tiny", "has no tensor named 'nope'");
    }

    [Fact]
    public void TruncatedFixtureFailsCleanlyAtEveryCut()
    {
        byte[] original = File.ReadAllBytes(Path.Combine(TestFiles.Fixture("a"), "model.safetensors"));
        foreach (int cut in new[] { 0, 5, 8, 100, 4736, original.Length / 2, original.Length - 1 })
        {
            string path = _dir.File($"cut-{cut}.safetensors");
            File.WriteAllBytes(path, original[..cut]);
            var ex = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path).Dispose());
            Assert.Contains($"cut-{cut}.safetensors", ex.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void ShrunkenFileFailsWhileLoading()
    {
        string path = _dir.File("shrink.safetensors");
        File.Copy(Path.Combine(TestFiles.Fixture("a"), "model.safetensors"), path);
        using var file = SafeTensorsFile.Open(path);
        var last = file.Entries.Values.MaxBy(e => e.DataEnd)!;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            stream.SetLength(stream.Length - 4);
        }

        TestFiles.AssertFails(() => file.Load(last.Name).Dispose(), "shrink.safetensors", "ends unexpectedly");
    }

    private string CopyShardedFixture(string name)
    {
        string dir = Path.Combine(_dir.Path, name);
        Directory.CreateDirectory(dir);
        foreach (var file in Directory.GetFiles(TestFiles.Fixture("b"), "model*"))
        {
            File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
        }

        return dir;
    }

    [Fact]
    public void IndexNamingAMissingShard()
    {
        string dir = CopyShardedFixture("missing-shard");
        File.Delete(Path.Combine(dir, "model-00002-of-00002.safetensors"));
        TestFiles.AssertFails(() => SafeTensorsCheckpoint.OpenDirectory(dir).Dispose(), "model.safetensors.index.json",
            "names shard 'model-00002-of-00002.safetensors'");
    }

    [Theory]
    [InlineData("{\"weight_map\": ", "is not valid JSON")]
    [InlineData("{\"metadata\": {}}", "has no \"weight_map\" object")]
    [InlineData("{\"weight_map\": {\"lm_head.weight\": 3}}", "weight_map entry for tensor 'lm_head.weight' is not a shard file name")]
    [InlineData("{\"weight_map\": {\"lm_head.weight\": \"../x.safetensors\"}}", "which is not a file in the model directory")]
    [InlineData("{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\"}}", "says tensor 'model.norm.weight' is in shard 'model-00001-of-00002.safetensors', but that shard has no such tensor")]
    public void MalformedIndex(string json, string phrase)
    {
        string dir = CopyShardedFixture("bad-index");
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), json);
        TestFiles.AssertFails(() => SafeTensorsCheckpoint.OpenDirectory(dir).Dispose(), "model.safetensors.index.json", phrase);
    }

    [Fact]
    public void BrokenShardIsNamed()
    {
        string dir = CopyShardedFixture("broken-shard");
        File.WriteAllBytes(Path.Combine(dir, "model-00002-of-00002.safetensors"), [9, 9]);
        TestFiles.AssertFails(() => SafeTensorsCheckpoint.OpenDirectory(dir).Dispose(), "model-00002-of-00002.safetensors", "too short");
    }

    [Fact]
    public void WriterRejectsUnsupportedDtype()
    {
        using var complex = torch.zeros([2], torch.ScalarType.ComplexFloat32);
        Assert.Throws<ArgumentException>(() =>
            SafeTensorsWriter.Write(_dir.File("c.safetensors"), [KeyValuePair.Create("c", complex)]));
    }
}
