using System.Text.Json.Nodes;

namespace TaH.Engine.Tests;

/// <summary>Paths of the reference fixtures copied into tests/fixtures.</summary>
internal static class Fixtures
{
    public static string Root { get; } = FindRoot();

    public static string Directory(string relative) => Path.Combine(Root, "tests", "fixtures", relative);

    public static string TinyCheckpoint(string name) => Directory(Path.Combine("tah-tiny", name));

    /// <summary>The reference's output for a tiny checkpoint, evaluated in float64.</summary>
    public static JsonObject Golden(string name) =>
        (JsonObject)JsonNode.Parse(File.ReadAllText(Directory(Path.Combine("tah-tiny", $"{name}.golden64.json"))))!;

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TaH.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("cannot find the repository root (TaH.sln) above " + AppContext.BaseDirectory);
    }
}

/// <summary>A temporary directory removed at dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "tah-test-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Tests that measure process-wide state (live tensors, memory) and must not overlap others.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialCollection
{
    public const string Name = "serial";
}
