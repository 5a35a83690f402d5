using System.Text.Json;
using TaH.Engine.Tokenization;

namespace TaH.Server.Api.Reading;

/// <summary>One prompt of a text completion: its tokens, and its text when it was sent as text.</summary>
internal sealed record PromptInput(IReadOnlyList<int> Tokens, string? Text);

/// <summary><c>prompt</c>: a string, a list of strings, a list of token ids or a list of such lists.</summary>
internal static class PromptReader
{
    private const string Shape = "'prompt' must be a string, a list of strings, a list of token ids or a list of lists of token ids.";

    public static List<PromptInput> Read(JsonElement? prompt, TextTokenizer tokenizer, int maxPrompts)
    {
        var result = new List<PromptInput>();
        switch (prompt)
        {
            case { ValueKind: JsonValueKind.String } s:
                result.Add(FromText(s.GetString()!, tokenizer));
                break;
            case { ValueKind: JsonValueKind.Array } a when a.GetArrayLength() > 0:
                if (a[0].ValueKind == JsonValueKind.Number)
                {
                    result.Add(new PromptInput(ReadIds(a, "prompt"), null));
                    break;
                }

                if (a.GetArrayLength() > maxPrompts)
                {
                    throw ApiException.BadRequest($"'prompt' has {a.GetArrayLength()} prompts; at most {maxPrompts} per request.", "prompt");
                }

                int i = 0;
                foreach (var item in a.EnumerateArray())
                {
                    result.Add(item.ValueKind switch
                    {
                        JsonValueKind.String => FromText(item.GetString()!, tokenizer),
                        JsonValueKind.Array => new PromptInput(ReadIds(item, $"prompt[{i}]"), null),
                        _ => throw ApiException.BadRequest(Shape, $"prompt[{i}]"),
                    });
                    i++;
                }

                break;
            case null or { ValueKind: JsonValueKind.Null }:
                throw ApiException.BadRequest("'prompt' is required.", "prompt");
            default:
                throw ApiException.BadRequest(Shape, "prompt");
        }

        return result;
    }

    private static PromptInput FromText(string text, TextTokenizer tokenizer) => new(tokenizer.Encode(text), text);

    private static int[] ReadIds(JsonElement array, string param)
    {
        var ids = new int[array.GetArrayLength()];
        int k = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out ids[k++]))
            {
                throw ApiException.BadRequest($"'{param}' must hold integer token ids only.", param);
            }
        }

        return ids;
    }
}
