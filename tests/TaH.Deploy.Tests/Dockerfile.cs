using System.Text.Json;
using System.Text.RegularExpressions;

namespace TaH.Deploy.Tests;

/// <summary>One instruction of a Dockerfile: its keyword and its arguments, continuation lines joined.</summary>
internal sealed record DockerInstruction(string Keyword, string Arguments)
{
    /// <summary>The exec form (a JSON array), as Docker reads ENTRYPOINT and CMD.</summary>
    public string[] ExecForm() =>
        Arguments.TrimStart().StartsWith('[')
            ? JsonSerializer.Deserialize<string[]>(Arguments)!
            : throw new FormatException($"{Keyword} is in shell form; the image uses the exec form: {Arguments}");
}

/// <summary>A build stage: FROM image [AS name] and the instructions up to the next FROM.</summary>
internal sealed record DockerStage(string Image, string? Name, IReadOnlyList<DockerInstruction> Instructions)
{
    public IEnumerable<DockerInstruction> All(string keyword) => Instructions.Where(i => i.Keyword == keyword);

    public DockerInstruction? Last(string keyword) => All(keyword).LastOrDefault();

    /// <summary>The ENV of the stage, in both forms (KEY=VALUE pairs, or KEY VALUE).</summary>
    public Dictionary<string, string> Environment()
    {
        var env = new Dictionary<string, string>();
        foreach (var instruction in All("ENV"))
        {
            var text = instruction.Arguments.Trim();
            if (!text.Contains('=', StringComparison.Ordinal) || Regex.IsMatch(text, @"^\S+\s+[^=]*$"))
            {
                var parts = text.Split((char[]?)null, 2, StringSplitOptions.RemoveEmptyEntries);
                env[parts[0]] = parts.Length > 1 ? parts[1] : "";
                continue;
            }

            foreach (Match m in Regex.Matches(text, @"(\S+?)=(""[^""]*""|\S*)"))
            {
                env[m.Groups[1].Value] = m.Groups[2].Value.Trim('"');
            }
        }

        return env;
    }
}

/// <summary>A Dockerfile read the way the builder reads it: comments dropped, continuations joined, stages split at FROM.</summary>
internal sealed class Dockerfile
{
    private Dockerfile(IReadOnlyDictionary<string, string> args, IReadOnlyList<DockerStage> stages)
    {
        GlobalArgs = args;
        Stages = stages;
    }

    /// <summary>ARGs before the first FROM, with their defaults.</summary>
    public IReadOnlyDictionary<string, string> GlobalArgs { get; }

    public IReadOnlyList<DockerStage> Stages { get; }

    /// <summary>The stage `docker build` produces without --target: the last one.</summary>
    public DockerStage Final => Stages[^1];

    public static Dockerfile Load(string path)
    {
        var instructions = new List<DockerInstruction>();
        string? pending = null;
        foreach (var raw in File.ReadAllLines(path))
        {
            var line = raw.TrimEnd();
            if (pending is null && (line.TrimStart().StartsWith('#') || line.Trim().Length == 0))
            {
                continue;
            }

            if (pending is not null && line.TrimStart().StartsWith('#'))
            {
                continue; // a comment inside a continued instruction
            }

            bool continues = line.EndsWith('\\');
            var text = continues ? line[..^1] : line;
            pending = pending is null ? text.Trim() : pending + " " + text.Trim();
            if (!continues)
            {
                var parts = pending.Split((char[]?)null, 2, StringSplitOptions.RemoveEmptyEntries);
                instructions.Add(new DockerInstruction(parts[0].ToUpperInvariant(), parts.Length > 1 ? parts[1] : ""));
                pending = null;
            }
        }

        var args = new Dictionary<string, string>();
        var stages = new List<DockerStage>();
        (string Image, string? Name)? from = null;
        var body = new List<DockerInstruction>();
        foreach (var instruction in instructions)
        {
            if (instruction.Keyword == "FROM")
            {
                if (from is { } f)
                {
                    stages.Add(new DockerStage(f.Image, f.Name, body));
                }

                var words = instruction.Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(w => !w.StartsWith("--", StringComparison.Ordinal)).ToArray();
                var image = Regex.Replace(words[0], @"\$\{?(\w+)\}?", m => args.TryGetValue(m.Groups[1].Value, out var v) ? v : m.Value);
                from = (image, words.Length >= 3 && words[1].Equals("AS", StringComparison.OrdinalIgnoreCase) ? words[2] : null);
                body = [];
            }
            else if (from is null && instruction.Keyword == "ARG")
            {
                var kv = instruction.Arguments.Split('=', 2);
                args[kv[0].Trim()] = kv.Length > 1 ? kv[1].Trim() : "";
            }
            else if (from is not null)
            {
                body.Add(instruction);
            }
        }

        if (from is { } last)
        {
            stages.Add(new DockerStage(last.Image, last.Name, body));
        }

        return new Dockerfile(args, stages);
    }
}
