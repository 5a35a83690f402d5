using System.Text.Json.Nodes;
using TaH.Engine.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Training.Data;

/// <summary>
/// One tokenized training sequence. <see cref="Supervised"/>[i] says position i's next-token
/// prediction (of <c>Tokens[i + 1]</c>) is trained; <see cref="Hard"/>[i], once labelled, says the
/// reference model got that prediction wrong (the oracle sends position i to depth 2).
/// </summary>
public sealed record Example(int[] Tokens, bool[] Supervised, bool[]? Hard = null)
{
    /// <summary>
    /// Reads a JSONL dataset: chat lines <c>{"messages": [{"role", "content"}...]}</c> train the last
    /// assistant message and its end token (the prompt rendered by the tokenizer's chat template with the
    /// generation prompt, as the server renders it); text lines <c>{"text": ...}</c> train every token.
    /// </summary>
    public static List<Example> ReadJsonl(string path, TextTokenizer tokenizer)
    {
        var examples = new List<Example>();
        int line = 0;
        foreach (string text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text))
            {
                continue;
            }

            var node = JsonNode.Parse(text) as JsonObject ?? throw new FormatException($"{path}:{line}: not a JSON object");
            examples.Add(node["messages"] is JsonArray messages ? FromChat(messages, tokenizer, $"{path}:{line}")
                : node["text"] is JsonValue value ? FromText(value.GetValue<string>(), tokenizer)
                : throw new FormatException($"{path}:{line}: expected \"messages\" (chat) or \"text\""));
        }

        return examples;
    }

    public static Example FromChat(JsonArray messages, TextTokenizer tokenizer, string where)
    {
        var turns = messages.Select(m => new ChatMessage(m!["role"]!.GetValue<string>(), m["content"]!.GetValue<string>())).ToList();
        if (turns.Count < 2 || turns[^1].Role != "assistant")
        {
            throw new FormatException($"{where}: a chat example must end with an assistant message");
        }

        var template = tokenizer.ChatTemplate ?? throw new FormatException($"{where}: the tokenizer has no chat template");
        var prompt = tokenizer.Encode(template.Render(turns[..^1], addGenerationPrompt: true));
        var reply = tokenizer.Encode(turns[^1].Content ?? "").Append(tokenizer.EosTokenId
            ?? throw new FormatException("the tokenizer has no eos_token")).ToArray();
        int[] tokens = [.. prompt, .. reply];
        var supervised = new bool[tokens.Length];
        for (int i = prompt.Count - 1; i < tokens.Length - 1; i++)
        {
            supervised[i] = true;
        }

        return new Example(tokens, supervised);
    }

    public static Example FromText(string text, TextTokenizer tokenizer)
    {
        int[] tokens = [.. tokenizer.Encode(text)];
        return new Example(tokens, [.. tokens.Select((_, i) => i < tokens.Length - 1)]);
    }
}

/// <summary>
/// A right-padded batch: ids <c>[B, T]</c>; targets <c>[B, T]</c> (the next token where supervised,
/// else -100); the positions that exist; and the oracle's hard positions when labelled.
/// </summary>
public sealed class Batch : IDisposable
{
    public const long IgnoreIndex = -100;

    private Batch(Tensor ids, Tensor targets, Tensor valid, Tensor? hard, long tokens)
    {
        Ids = ids;
        Targets = targets;
        Valid = valid;
        Hard = hard;
        Tokens = tokens;
    }

    public Tensor Ids { get; }

    public Tensor Targets { get; }

    /// <summary>Positions that hold a real token (not padding).</summary>
    public Tensor Valid { get; }

    public Tensor? Hard { get; }

    /// <summary>Real tokens in the batch (for tokens/s).</summary>
    public long Tokens { get; }

    public static Batch Make(IReadOnlyList<Example> examples, int padId)
    {
        int b = examples.Count, t = examples.Max(e => e.Tokens.Length);
        var ids = new long[b * t];
        var targets = new long[b * t];
        var valid = new bool[b * t];
        var hard = new bool[b * t];
        bool labelled = examples.All(e => e.Hard is not null);
        Array.Fill(ids, padId);
        Array.Fill(targets, IgnoreIndex);
        for (int i = 0; i < b; i++)
        {
            var e = examples[i];
            for (int p = 0; p < e.Tokens.Length; p++)
            {
                ids[(i * t) + p] = e.Tokens[p];
                valid[(i * t) + p] = true;
                if (e.Supervised[p])
                {
                    targets[(i * t) + p] = e.Tokens[p + 1];
                }

                hard[(i * t) + p] = labelled && e.Hard![p];
            }
        }

        return new Batch(
            tensor(ids).view(b, t),
            tensor(targets).view(b, t),
            tensor(valid).view(b, t),
            labelled ? tensor(hard).view(b, t) : null,
            examples.Sum(e => e.Tokens.Length));
    }

    public void Dispose()
    {
        Ids.Dispose();
        Targets.Dispose();
        Valid.Dispose();
        Hard?.Dispose();
    }
}
