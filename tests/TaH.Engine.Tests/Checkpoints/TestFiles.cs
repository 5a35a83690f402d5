using System.Buffers.Binary;
using System.Text.Json;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Engine.Tests.Checkpoints;

/// <summary>Fixture locations, scratch directories and independent ways to look at raw file bytes.</summary>
internal static class TestFiles
{
    private static readonly Lazy<string> RepoRoot = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (Directory.Exists(Path.Combine(dir.FullName, "tests", "fixtures", "tah-tiny")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("tests/fixtures/tah-tiny not found above " + AppContext.BaseDirectory);
    });

    public static string Fixture(string model) => Path.Combine(RepoRoot.Value, "tests", "fixtures", "tah-tiny", model);

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

/// <summary>A directory under the system temp folder, deleted on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "tah-ckpt-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A leftover scratch folder must not fail a test.
        }
    }
}
