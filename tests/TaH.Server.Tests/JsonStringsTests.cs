using System.Text;
using System.Text.Json;
using TaH.Server.Api.Reading;

namespace TaH.Server.Tests;

/// <summary>The body's string check: every valid text passes, each kind of invalid one is found with its path.</summary>
public sealed class JsonStringsTests
{
    [Theory]
    [InlineData("plain ascii")]
    [InlineData("escapes \\n \\t \\\\ \\\" \\/ \\u0041 \\u00e9")]
    [InlineData("a pair \\ud83d\\ude00 and \\uD83D\\uDE00, and é 日本 😀 raw")]
    [InlineData("\\ud7ff\\ue000 around the surrogates")]
    public void ValidTextPasses(string text)
    {
        using var document = JsonDocument.Parse($$$"""{"a": ["{{{text}}}"], "{{{text}}}": {"b": "{{{text}}}"}}""");
        Assert.Null(JsonStrings.FindInvalid(document.RootElement));
    }

    [Theory]
    [InlineData("\\ud800", "a[1].b")]
    [InlineData("x\\udc00y", "a[1].b")]
    [InlineData("\\ud800\\u0041", "a[1].b")]
    [InlineData("\\ud800\\ud800", "a[1].b")]
    public void UnpairedSurrogatesAreFoundByPath(string text, string path)
    {
        using var document = JsonDocument.Parse($$$"""{"z": 1, "a": ["fine", {"b": "{{{text}}}"}]}""");
        Assert.Equal(path, JsonStrings.FindInvalid(document.RootElement));
    }

    [Fact]
    public void InvalidUtf8InAPropertyNameNamesTheObject()
    {
        byte[] body = [.. Encoding.UTF8.GetBytes("""{"a": {"""), (byte)'"', 0xFF, (byte)'"', .. Encoding.UTF8.GetBytes(": 1}}")];
        using var document = JsonDocument.Parse(body);
        Assert.Equal("a", JsonStrings.FindInvalid(document.RootElement));
    }
}
