using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace TaH.Deploy.Tests;

/// <summary>
/// The CPU and CUDA Dockerfiles, read as the builder reads them (no Docker engine here), and the
/// build switch the CUDA image relies on, evaluated by MSBuild itself.
/// </summary>
public sealed partial class DockerfileTests
{
    public static TheoryData<string> Images => ["Dockerfile", "Dockerfile.cuda"];

    [Theory]
    [MemberData(nameof(Images))]
    public void TheImageIsMultiStageNonRootWithAHealthCheckAndAModelVolume(string file)
    {
        var image = Dockerfile.Load(Repo.Path(file));
        Assert.True(image.Stages.Count >= 2, "a multi-stage build: the SDK builds, a runtime image runs");
        var build = Assert.Single(image.Stages, s => s.All("RUN").Any(r => r.Arguments.Contains("dotnet publish", StringComparison.Ordinal)));
        Assert.StartsWith("mcr.microsoft.com/dotnet/sdk:", build.Image, StringComparison.Ordinal);
        Assert.NotSame(build, image.Final);
        Assert.DoesNotContain("/dotnet/sdk", image.Final.Image, StringComparison.Ordinal);
        Assert.Contains(image.Final.All("COPY"), c => c.Arguments.Contains($"--from={build.Name}", StringComparison.Ordinal));

        // The runtime matches the framework the projects target.
        var framework = Regex.Match(Repo.Read("Directory.Build.props"), @"<TargetFramework>net([\d.]+)</TargetFramework>").Groups[1].Value;
        Assert.EndsWith($":{framework}", build.Image.Split('-')[0], StringComparison.Ordinal);
        Assert.Contains(image.Stages, s => s.Image.Split('-')[0] == $"mcr.microsoft.com/dotnet/aspnet:{framework}");

        // A numeric, non-root user (Kubernetes' runAsNonRoot can only check a number).
        var user = image.Final.Last("USER")!.Arguments.Split(':')[0];
        Assert.True(int.TryParse(user, out int uid) && uid > 0, $"USER {user} is not a numeric non-root user");

        var healthcheck = image.Final.Last("HEALTHCHECK")!.Arguments;
        Assert.Matches(@"\bCMD\b.*/health\b", healthcheck);

        var env = image.Final.Environment();
        Assert.Equal("0.0.0.0", env[ImageProcess.HostVariable]); // reachable from outside the container
        Assert.Contains(env[ImageProcess.PortVariable], image.Final.All("EXPOSE").Select(e => e.Arguments.Split('/')[0]));

        var volumes = image.Final.All("VOLUME").SelectMany(v => JsonSerializer.Deserialize<string[]>(v.Arguments)!).ToList();
        var command = image.Final.Last("ENTRYPOINT")!.ExecForm().Concat(image.Final.Last("CMD")!.ExecForm()).ToList();
        Assert.Equal(["dotnet", "/app/tah.dll"], command.Take(2));
        var model = command[command.IndexOf("--model") + 1];
        Assert.Contains(volumes, v => model.StartsWith(v.TrimEnd('/') + "/", StringComparison.Ordinal));

        // The published project exists, and what the build copies is in the build context.
        var project = Regex.Match(build.All("RUN").First(r => r.Arguments.Contains("dotnet publish", StringComparison.Ordinal)).Arguments, @"dotnet publish (\S+)").Groups[1].Value;
        Assert.True(File.Exists(Repo.Path(project)), $"{project} does not exist");
    }

    [Fact]
    public void TheCudaImageBuildsTheCudaBackendOnNvidiasRuntimeImage()
    {
        var image = Dockerfile.Load(Repo.Path("Dockerfile.cuda"));
        Assert.Matches(@"^nvidia/cuda:[\d.]+-(cudnn-)?runtime-ubuntu[\d.]+$", image.Final.Image);

        // The .NET runtime copied in comes from an image of the same Ubuntu release.
        var ubuntu = Regex.Match(image.Final.Image, @"ubuntu([\d.]+)$").Groups[1].Value;
        var codename = new Dictionary<string, string> { ["22.04"] = "jammy", ["24.04"] = "noble" }[ubuntu];
        var dotnet = image.Stages.Single(s => s.Image.StartsWith("mcr.microsoft.com/dotnet/aspnet:", StringComparison.Ordinal));
        Assert.EndsWith("-" + codename, dotnet.Image, StringComparison.Ordinal);
        Assert.Contains(image.Final.All("COPY"), c => c.Arguments.Contains($"--from={dotnet.Name}", StringComparison.Ordinal));

        var publish = image.Stages.SelectMany(s => s.All("RUN")).Single(r => r.Arguments.Contains("dotnet publish", StringComparison.Ordinal)).Arguments;
        Assert.Matches(@"-p:TorchBackend=cuda\b", publish);
    }

    [Fact]
    public async Task TheCudaSwitchReplacesTheCpuLibtorchAndLeavesTheDefaultBuildAlone()
    {
        var project = Repo.Path("src", "TaH.Engine", "TaH.Engine.csproj");
        var backend = Regex.Match(Dockerfile.Load(Repo.Path("Dockerfile.cuda")).Stages.SelectMany(s => s.All("RUN")).Single(r => r.Arguments.Contains("dotnet publish", StringComparison.Ordinal)).Arguments,
            @"-p:TorchBackend=(\w+)").Groups[1].Value;

        var cuda = await EvaluateAsync(project, $"-p:TorchBackend={backend}");
        var cpu = await EvaluateAsync(project);

        Assert.Contains("TorchSharp-cuda-linux", cuda.References);
        Assert.DoesNotContain("libtorch-cpu-linux-x64", cuda.References);
        Assert.Contains("libtorch-cpu-linux-x64", cpu.References);
        Assert.DoesNotContain(cpu.References, r => r.Contains("cuda", StringComparison.OrdinalIgnoreCase));

        // TorchSharp-cuda-linux pins its own TorchSharp: the same version as the project's.
        Assert.Equal(cpu.Versions["TorchSharp"], cuda.Versions["TorchSharp-cuda-linux"]);
    }

    [Fact]
    public void TheBuildContextKeepsWhatTheBuildNeedsAndDropsHostBuildOutput()
    {
        var patterns = File.ReadAllLines(Repo.Path(".dockerignore")).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        var needed = new[] { "global.json", "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props", "build/fix-torchsharp-glibcxx.sh" }
            .Concat(Directory.EnumerateFiles(Repo.Path("src"), "*", SearchOption.AllDirectories)
                .Select(f => Path.GetRelativePath(Repo.Root, f).Replace('\\', '/'))
                .Where(f => !f.Contains("/bin/", StringComparison.Ordinal) && !f.Contains("/obj/", StringComparison.Ordinal)))
            .ToList();
        Assert.Contains(needed, f => f.EndsWith(".csproj", StringComparison.Ordinal));
        Assert.DoesNotContain(needed, f => Ignored(f, patterns));
        Assert.True(Ignored("src/TaH.Server/bin/Release/net10.0/tah.dll", patterns));
        Assert.True(Ignored("src/TaH.Engine/obj/project.assets.json", patterns));
    }

    private static async Task<(HashSet<string> References, Dictionary<string, string> Versions)> EvaluateAsync(string project, params string[] properties)
    {
        var result = await Tool.RunAsync("dotnet", ["msbuild", project, "-getItem:PackageReference", "-getItem:PackageVersion", .. properties]);
        Assert.True(result.ExitCode == 0, result.All);
        var items = JsonNode.Parse(result.Output)!["Items"]!;
        var references = items["PackageReference"]!.AsArray().Select(i => (string)i!["Identity"]!).ToHashSet();
        var versions = items["PackageVersion"]!.AsArray().ToDictionary(i => (string)i!["Identity"]!, i => (string)i!["Version"]!);
        return (references, versions);
    }

    /// <summary>Whether .dockerignore leaves the path out: a pattern matches it or one of its folders.</summary>
    private static bool Ignored(string path, List<string> patterns)
    {
        bool ignored = false;
        foreach (var raw in patterns)
        {
            bool negate = raw.StartsWith('!');
            var pattern = (negate ? raw[1..] : raw).TrimEnd('/').TrimStart('/');
            var regex = new Regex("^" + Regex.Escape(pattern).Replace(@"\*\*/", "(.*/)?", StringComparison.Ordinal).Replace(@"\*", "[^/]*", StringComparison.Ordinal).Replace(@"\?", "[^/]", StringComparison.Ordinal) + "(/.*)?$");
            if (regex.IsMatch(path))
            {
                ignored = !negate;
            }
        }

        return ignored;
    }
}
