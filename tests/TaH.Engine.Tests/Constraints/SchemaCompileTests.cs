using TaH.Engine.Constraints;
using TaH.Engine.Tokenization;

namespace TaH.Engine.Tests.Constraints;

/// <summary>What the JSON Schema compiler refuses, and how it says so.</summary>
public sealed class SchemaCompileTests
{
    // The demo model's small byte-level vocabulary: compiling is quick, the answers are the same.
    private static readonly Lazy<ConstraintCompiler> Demo = new(() =>
        new ConstraintCompiler(TokenVocabulary.Create(TextTokenizer.Load(Path.Combine(Fixtures.Root, "models", "tah-arith")), 280)));

    private static ConstraintException Refused(string schema) => Assert.Throws<ConstraintException>(() => Demo.Value.JsonSchema(schema));

    [Theory]
    [InlineData("""{"type":"string","pattern":"a+"}""", "pattern")]
    [InlineData("""{"not":{"type":"null"}}""", "not")]
    [InlineData("""{"type":"object","patternProperties":{"^a":{}}}""", "patternProperties")]
    [InlineData("""{"type":"object","minProperties":1}""", "minProperties")]
    [InlineData("""{"type":"array","uniqueItems":true}""", "uniqueItems")]
    [InlineData("""{"type":"array","contains":{"type":"null"}}""", "contains")]
    [InlineData("""{"type":"number","multipleOf":2}""", "multipleOf")]
    [InlineData("""{"if":{"type":"null"},"then":{"type":"null"}}""", "if")]
    [InlineData("""{"allOf":[{"type":"object"},{"required":["a"]}]}""", "allOf")]
    [InlineData("""{"type":"string","format":"uri"}""", "format")]
    [InlineData("""{"$ref":"https://example.com/other.json"}""", "$ref")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","dependentRequired":{}}}}""", "dependentRequired")]
    [InlineData("""{"oneOf":[{"type":"integer"},{"type":"number"}]}""", "oneOf")]
    [InlineData("""{"oneOf":[{"type":"object","properties":{"a":{}}},{"type":"object"}]}""", "oneOf")]
    [InlineData("""{"type":"object","anyOf":[{"type":"object"}],"properties":{"a":{}}}""", "properties")]
    [InlineData("""{"$defs":{"a":{"type":"null"}},"$ref":"#/$defs/a","type":"null"}""", "type")]
    public void AnUnsupportedKeywordIsRefusedByName(string schema, string keyword)
    {
        var e = Refused(schema);
        Assert.Equal(ConstraintError.Unsupported, e.Error);
        Assert.Equal(keyword, e.Keyword);
        Assert.Contains($"'{keyword}'", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"type":"strin"}""", "'type'")]
    [InlineData("""{"type":[]}""", "'type'")]
    [InlineData("""{"required":"a"}""", "'required'")]
    [InlineData("""{"properties":[1]}""", "'properties'")]
    [InlineData("""{"type":"string","maxLength":-1}""", "'maxLength'")]
    [InlineData("""{"type":"string","minLength":1.5}""", "'minLength'")]
    [InlineData("""{"type":"integer","minimum":"0"}""", "'minimum'")]
    [InlineData("""{"enum":"a"}""", "'enum'")]
    [InlineData("""{"anyOf":[]}""", "'anyOf'")]
    [InlineData("""{"items":5}""", "schema must be")]
    [InlineData("""{"$ref":"#/$defs/missing"}""", "points to nothing")]
    [InlineData("""[1,2]""", "schema must be")]
    [InlineData("""{"type":"object",""", "not valid JSON")]
    [InlineData("""{"anyOf":[{"$ref":"#"},{"type":"null"}]}""", "left recursion")]
    public void AnInvalidSchemaIsRefused(string schema, string said)
    {
        var e = Refused(schema);
        Assert.Equal(ConstraintError.Invalid, e.Error);
        Assert.Contains(said, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"type":"string","minLength":5,"maxLength":2}""")]
    [InlineData("""{"type":"integer","minimum":5,"maximum":4}""")]
    [InlineData("""{"type":"array","minItems":3,"prefixItems":[{}],"items":false}""")]
    [InlineData("""{"enum":[1,2],"type":"string"}""")]
    [InlineData("""{"type":"object","properties":{"a":false},"required":["a"]}""")]
    [InlineData("""{"$defs":{"n":{"type":"object","properties":{"next":{"$ref":"#/$defs/n"}},"required":["next"]}},"$ref":"#/$defs/n"}""")]
    [InlineData("""{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}""")]
    [InlineData("false")]
    public void ASchemaNothingSatisfiesIsRefused(string schema) => Assert.Equal(ConstraintError.Unsatisfiable, Refused(schema).Error);

    [Fact]
    public void AnnotationsAndUnknownKeywordsAreIgnored()
    {
        var plain = Demo.Value.JsonSchema("""{"type":"integer","minimum":0,"maximum":3}""");
        var annotated = Demo.Value.JsonSchema("""{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"t","description":"d","default":1,"examples":[2],"x-vendor":true,"type":"integer","minimum":0,"maximum":3}""");
        Assert.Equal(plain.StateCount, annotated.StateCount);
    }

    [Fact]
    public void CompiledSchemasAreCachedByTheirText()
    {
        var compiler = new ConstraintCompiler(Demo.Value.Vocabulary, cacheSize: 2);
        var a = compiler.JsonSchema("""{"type":"boolean"}""");
        Assert.Same(a, compiler.JsonSchema("""{"type":"boolean"}"""));
        compiler.JsonSchema("""{"type":"null"}""");
        compiler.JsonSchema("""{"type":"integer"}""");
        Assert.Equal(2, compiler.CachedCount);
        Assert.NotSame(a, compiler.JsonSchema("""{"type":"boolean"}""")); // evicted, least recently used
        Assert.Throws<ConstraintException>(() => compiler.JsonSchema("""{"type":"strin"}"""));
        Assert.Throws<ConstraintException>(() => compiler.JsonSchema("""{"type":"strin"}""")); // failures are not kept
    }
}
