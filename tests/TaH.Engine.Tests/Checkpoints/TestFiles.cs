using System.Buffers.Binary;
using System.Text.Json;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Engine.Tests.Checkpoints;

/// <summary>Fixture locations and independent ways to look at raw file bytes.</summary>
internal static class TestFiles
{
    public static string Fixture(string model) => Fixtures.TinyCheckpoint(model);

    public static JsonElement ReadJson(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        return document.RootElement.Clone();
    }

    public static byte[] BytesOf(torch.Tensor tensor) => tensor.bytes.ToArray();

    /// <summary>Reads a tensor's raw bytes from a safetensors file with nothing but the format's definition.</summary>
    public static byte[] RawTensorBytes(string file, string name)
    {
        byte[] all = File.ReadAllBytes(file);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(all);
        using var header = JsonDocument.Parse(all.AsMemory(8, (int)headerLength));
        var offsets = header.RootElement.GetProperty(name).GetProperty("data_offsets");
        long begin = 8 + headerLength + offsets[0].GetInt64();
        long end = 8 + headerLength + offsets[1].GetInt64();
        return all[(int)begin..(int)end];
    }

    public static CheckpointException AssertFails(Action action, string fileName, string phrase)
    {
        var ex = Assert.Throws<CheckpointException>(action);
        Assert.Contains(fileName, ex.Message, StringComparison.Ordinal);
        Assert.Contains(phrase, ex.Message, StringComparison.Ordinal);
        return ex;
    }
}
