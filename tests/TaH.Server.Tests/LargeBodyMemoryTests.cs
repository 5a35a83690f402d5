using System.Text;
using Xunit.Abstractions;

namespace TaH.Server.Tests;

/// <summary>
/// Large legal bodies must not leave memory behind (issue 11: seven bodies of 3 MB strings and
/// 100k messages, repeated, took a server from 248 MB to 1.58 GB, still 1.45 GB after a minute of
/// normal traffic). A started tah's resident set, after rounds of such bodies and then small
/// requests, stays within a bound of where it began. TAH_MEMORY_PROBE_ROUNDS and
/// TAH_MEMORY_PROBE_SECONDS scale it up to the issue's recipe (12 rounds, 60 s); TAH_MEMORY_PROBE_TAH
/// runs another build of tah.dll, for a before/after comparison.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class LargeBodyMemoryTests(ITestOutputHelper output)
{
    private const string Small = """{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}""";

    /// <summary>Seven bodies of 2.7 to 3.3 MB, each legal JSON under the 4 MiB limit.</summary>
    private static IEnumerable<(string Path, string Body)> LargeBodies()
    {
        string text = string.Concat(Enumerable.Repeat("lorem ipsum dolor sit amet ", 111_112))[..3_000_000];
        string HundredK(string item) => string.Join(",", Enumerable.Repeat(item, 100_000));
        yield return ("/v1/chat/completions", $$$"""{"messages": [{"role": "user", "content": "{{{text}}}"}], "max_tokens": 1}""");
        yield return ("/v1/chat/completions", $$$"""{"messages": [{"role": "user", "content": [{{{HundredK("""{"type": "text", "text": "hi"}""")}}}]}], "max_tokens": 1}""");
        yield return ("/v1/chat/completions", $$$"""{"messages": [{{{HundredK("""{"role": "user", "content": "hi"}""")}}}], "max_tokens": 1}""");
        yield return ("/v1/chat/completions", $$$"""{"messages": [{"role": "system", "content": "{{{text}}}"}, {"role": "user", "content": "hi"}], "max_tokens": 1}""");
        yield return ("/v1/chat/completions", $$$"""{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "description": "{{{text}}}"}}], "max_tokens": 1}""");
        yield return ("/v1/completions", $$$"""{"prompt": "{{{text}}}", "max_tokens": 1}""");
        yield return ("/v1/completions", $$$"""{"prompt": [{{{HundredK("17")}}}], "max_tokens": 1}""");
    }

    [Fact]
    public async Task ResidentMemoryReturnsNearItsStartAfterLargeBodies()
    {
        int rounds = int.TryParse(Environment.GetEnvironmentVariable("TAH_MEMORY_PROBE_ROUNDS"), out var r) ? r : 3;
        int seconds = int.TryParse(Environment.GetEnvironmentVariable("TAH_MEMORY_PROBE_SECONDS"), out var s) ? s : 10;
        string[] args = ["serve", "--model", TestModel.Directory, "--port", "0", "--kv-blocks", "256", "--max-model-len", "2048"];
        using var tah = Environment.GetEnvironmentVariable("TAH_MEMORY_PROBE_TAH") is { Length: > 0 } other ? TahProcess.StartBuild(other, args) : TahProcess.Start(args);
        using var http = new HttpClient { BaseAddress = await tah.WaitUntilServingAsync(TimeSpan.FromSeconds(120)), Timeout = TimeSpan.FromMinutes(5) };
        async Task<int> Post(string path, string body)
        {
            using var response = await http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
            return (int)response.StatusCode;
        }

        // The same small traffic before and after, so that both figures include what it settles at.
        async Task SmallTraffic(string phase)
        {
            var until = DateTime.UtcNow.AddSeconds(seconds);
            for (int i = 0; DateTime.UtcNow < until; i++)
            {
                Assert.Equal(200, await Post("/v1/chat/completions", Small));
                if (i % 100 == 0)
                {
                    output.WriteLine($"{phase}, small request {i}: RSS {tah.ResidentBytes() >> 20} MiB");
                }
            }
        }

        await SmallTraffic("before");
        long start = tah.ResidentBytes();
        var bodies = LargeBodies().ToList();
        long peak = start;
        for (int round = 0; round < rounds; round++)
        {
            var statuses = await Task.WhenAll(bodies.Select(b => Post(b.Path, b.Body)));
            Assert.All(statuses, status => Assert.True(status is 200 or 400, $"status {status}")); // answered, never a 500
            peak = Math.Max(peak, tah.ResidentBytes());
            output.WriteLine($"round {round + 1}: RSS {tah.ResidentBytes() >> 20} MiB (statuses {string.Join(",", statuses)})");
        }

        await SmallTraffic("after");

        long end = tah.ResidentBytes();
        output.WriteLine($"RSS at start {start >> 20} MiB, peak {peak >> 20} MiB, after {seconds} s of small requests {end >> 20} MiB");
        // Measured here (the issue's recipe, 12 rounds and 60 s): 403 -> 1155 MiB before the fix,
        // 429 -> 529 MiB after; with this test's 3 rounds and 10 s, +428 MiB before, +109 MiB after.
        Assert.True(end - start < 256L << 20, $"resident memory stayed {(end - start) >> 20} MiB above its start ({start >> 20} -> {end >> 20} MiB; peak {peak >> 20} MiB)");
    }
}
