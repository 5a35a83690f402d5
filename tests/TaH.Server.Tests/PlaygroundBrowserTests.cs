using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace TaH.Server.Tests;

/// <summary>The playground page in headless Chromium: a prompt in, a streamed answer coloured by depth out.</summary>
[Collection(ServerCollection.Name)]
public sealed class PlaygroundBrowserTests(SharedServer shared, ITestOutputHelper output)
{
    private const string Prompt = "Explain why the sky is blue.";
    private const int MaxTokens = 32;

    private readonly TestServer _server = shared.Server;

    [Fact]
    public async Task ThePageStreamsAnAnswerColouredByDepth()
    {
        // A random decider's probabilities sit in a narrow band: pick the threshold that splits
        // this answer's tokens between the depths, so both colours must show.
        double threshold = await MixedThresholdAsync();

        await using var browser = await Chromium.LaunchAsync();
        await browser.NavigateAsync(_server.BaseAddress);
        Assert.Equal("TaH playground", (string?)await browser.EvaluateAsync("document.title"));
        await browser.EvaluateAsync($$"""
            (() => {
              document.getElementById("prompt").value = {{JsonSerializer.Serialize(Prompt)}};
              document.getElementById("policy").value = "decider";
              document.getElementById("threshold").value = "{{threshold.ToString(CultureInfo.InvariantCulture)}}";
              document.getElementById("temperature").value = "0";
              document.getElementById("maxTokens").value = "{{MaxTokens}}";
              document.getElementById("think").checked = false;
              document.getElementById("send").click();
            })()
            """);

        bool done = false;
        for (int i = 0; i < 1200 && !done; i++)
        {
            await Task.Delay(50);
            done = (string?)await browser.EvaluateAsync("document.body.dataset.done || ''") == "true";
        }

        Assert.True(done, "the page did not finish streaming: " + await browser.EvaluateAsync("document.getElementById('error').textContent"));
        Assert.Equal("", (string?)await browser.EvaluateAsync("document.getElementById('error').textContent"));

        var page = (await browser.EvaluateAsync("""
            JSON.stringify({
              text: document.getElementById("output").textContent,
              spans: [...document.querySelectorAll("#output span.tok")].map(s => ({ cls: s.className, depths: s.dataset.depths, color: getComputedStyle(s).color })),
              share: document.getElementById("share").textContent,
              tokens: document.getElementById("tokens").textContent,
            })
            """))!.GetValue<string>();
        var state = JsonNode.Parse(page)!;

        var screenshot = await browser.ScreenshotAsync();
        var path = Repo.Path("TestResults", "playground.png");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        await File.WriteAllBytesAsync(path, screenshot);
        output.WriteLine($"playground screenshot: {path}");
        Console.WriteLine($"playground screenshot: {path}");
        Assert.True(screenshot.Length > 1000);

        // The same request over the API: the page must show exactly these depths.
        var expected = await AskAsync(threshold);
        var expectedDepths = expected["choices"]![0]!["tah"]!["depths"]!.AsArray().Select(d => (int)d!).ToList();
        var spans = state["spans"]!.AsArray();
        var pageDepths = spans.SelectMany(s => ((string)s!["depths"]!).Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse)).ToList();
        Assert.Equal((string)expected["choices"]![0]!["message"]!["content"]!, (string)state["text"]!);
        Assert.True(pageDepths.Count <= expectedDepths.Count && expectedDepths.Take(pageDepths.Count).SequenceEqual(pageDepths), "the page's depths are not the API's");

        // Both colours show, each span coloured by its tokens' depth.
        Assert.Contains(spans, s => ((string)s!["cls"]!).Contains("d2", StringComparison.Ordinal));
        Assert.Contains(spans, s => ((string)s!["cls"]!).Contains("d1", StringComparison.Ordinal));
        foreach (var s in spans)
        {
            int deepest = ((string)s!["depths"]!).Split(',').Select(int.Parse).Max();
            Assert.Contains($"d{deepest}", (string)s["cls"]!, StringComparison.Ordinal);
        }

        Assert.NotEqual(spans.First(s => ((string)s!["cls"]!).Contains("d2", StringComparison.Ordinal))!["color"]!.ToString(),
            spans.First(s => ((string)s!["cls"]!).Contains("d1", StringComparison.Ordinal))!["color"]!.ToString());

        // The running share is the API's depth-2 share.
        Assert.Equal(expectedDepths.Count.ToString(CultureInfo.InvariantCulture), (string)state["tokens"]!);
        double share = 100.0 * expectedDepths.Count(d => d >= 2) / expectedDepths.Count;
        var shown = (string)state["share"]!;
        Assert.EndsWith("%", shown, StringComparison.Ordinal);
        Assert.Equal(share, double.Parse(shown.TrimEnd('%'), CultureInfo.InvariantCulture), 0.051); // one decimal on the page
    }

    private async Task<JsonNode> AskAsync(double threshold)
    {
        var (status, json) = await _server.PostAsync("/v1/chat/completions", new
        {
            messages = new[] { new { role = "user", content = Prompt } },
            max_tokens = MaxTokens,
            temperature = 0,
            chat_template_kwargs = new { enable_thinking = false },
            tah = new { policy = "decider", threshold },
        });
        Assert.Equal(200, status);
        return json!;
    }

    private async Task<double> MixedThresholdAsync()
    {
        // The share falls as the threshold rises: bisect towards a half-and-half answer.
        double lo = 0, hi = 1, best = 0.5, bestDistance = double.MaxValue;
        for (int i = 0; i < 24 && bestDistance > 0.2; i++)
        {
            double t = (lo + hi) / 2;
            double share = (double)(await AskAsync(t))["usage"]!["tah"]!["depth2_share"]!;
            if (Math.Abs(share - 0.5) < bestDistance)
            {
                (best, bestDistance) = (t, Math.Abs(share - 0.5));
            }

            (lo, hi) = share > 0.5 ? (t, hi) : (lo, t);
        }

        Assert.True(bestDistance < 0.45, "no decider threshold gives both depths for this answer");
        return best;
    }
}
