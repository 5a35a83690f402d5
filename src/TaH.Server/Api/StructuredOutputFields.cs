using System.Text.Json;

namespace TaH.Server.Api;

// The request fields of structured outputs, read by StructuredOutputReader. Fields that take
// several JSON shapes stay JsonElement, so the reader can name the offending parameter.

/// <summary>vLLM's structured-output extensions, on chat and text completions.</summary>
public abstract partial record GenerationRequestBody
{
    /// <summary>vLLM: {"json": schema} | {"regex": ...} | {"choice": [...]} | {"json_object": true}.</summary>
    public JsonElement? StructuredOutputs { get; init; }

    /// <summary>vLLM (older): a JSON Schema, as an object or as JSON text.</summary>
    public JsonElement? GuidedJson { get; init; }

    public JsonElement? GuidedRegex { get; init; }

    public JsonElement? GuidedChoice { get; init; }

    public JsonElement? GuidedGrammar { get; init; }

    public JsonElement? GuidedWhitespacePattern { get; init; }

    /// <summary>vLLM's choice of backend (xgrammar, guidance, outlines): accepted, there is one here.</summary>
    public string? GuidedDecodingBackend { get; init; }
}

/// <summary>OpenAI's {"type": "json_schema", "json_schema": {"name", "schema", "strict", "description"}}.</summary>
public sealed partial record ResponseFormat
{
    public JsonElement? JsonSchema { get; init; }
}

/// <summary>vLLM takes response_format on text completions too.</summary>
public sealed partial record CompletionRequest
{
    public ResponseFormat? ResponseFormat { get; init; }
}
