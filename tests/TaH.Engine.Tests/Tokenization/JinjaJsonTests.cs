using System.Text.Json.Nodes;
using TaH.Engine.Tokenization;

namespace TaH.Engine.Tests.Tokenization;

/// <summary>tojson as @huggingface/jinja writes it; expected strings are Node's JSON.stringify output.</summary>
public class JinjaJsonTests
{
    [Theory]
    [InlineData("0", "0")]
    [InlineData("-0", "0")]
    [InlineData("1.0", "1")]
    [InlineData("-1", "-1")]
    [InlineData("1.5", "1.5")]
    [InlineData("0.1", "0.1")]
    [InlineData("0.000001", "0.000001")]
    [InlineData("0.0000001", "1e-7")]
    [InlineData("123456789012", "123456789012")]
    [InlineData("1e21", "1e+21")]
    [InlineData("1e20", "100000000000000000000")]
    [InlineData("123e18", "123000000000000000000")]
    [InlineData("1.7976931348623157e308", "1.7976931348623157e+308")]
    [InlineData("5e-324", "5e-324")]
    [InlineData("2.5e-3", "0.0025")]
    [InlineData("-1.25e-10", "-1.25e-10")]
    [InlineData("100", "100")]
    [InlineData("1234.5678", "1234.5678")]
    [InlineData("0.3333333333333333", "0.3333333333333333")]
    [InlineData("9007199254740993", "9007199254740992")]
    [InlineData("1e15", "1000000000000000")]
    [InlineData("1e16", "10000000000000000")]
    [InlineData("12345678901234567890", "12345678901234567000")]
    [InlineData("1e400", "null")]
    public void NumbersAreWrittenAsJavaScriptWritesThem(string json, string expected)
    {
        Assert.Equal(expected, JinjaJson.ToJson(JsonNode.Parse(json)));
    }

    [Fact]
    public void StringsAreEscapedAsJsonStringify()
    {
        var s = "q\"b\\s\b\f\n\r\t\u0001\u001f\u007f\u2028\u00e9\ud83d\ude42\ud800x\udc00/";
        Assert.Equal("\"q\\\"b\\\\s\\b\\f\\n\\r\\t\\u0001\\u001f\u007f\u2028\u00e9\ud83d\ude42\\ud800x\\udc00/\"", JinjaJson.ToJson(JsonValue.Create(s)));
    }

    [Fact]
    public void ObjectKeysFollowJavaScriptOrder()
    {
        var node = JsonNode.Parse("""{"b":1,"10":2,"a":3,"2":4,"01":5,"-1":6,"4294967295":7,"4294967294":8}""");
        Assert.Equal(
            """{"2": 4, "10": 2, "4294967294": 8, "b": 1, "a": 3, "01": 5, "-1": 6, "4294967295": 7}""",
            JinjaJson.ToJson(node));
    }

    [Fact]
    public void NestedValuesUseCommaSpaceAndColonSpace()
    {
        var node = JsonNode.Parse("""{"a":[1,true,null,{"x":"ü"}],"e":{},"f":[]}""");
        Assert.Equal("""{"a": [1, true, null, {"x": "ü"}], "e": {}, "f": []}""", JinjaJson.ToJson(node));
        Assert.Equal("null", JinjaJson.ToJson(null));
    }
}
