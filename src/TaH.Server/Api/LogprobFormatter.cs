using TaH.Engine.Generation;
using TaH.Engine.Tokenization;

namespace TaH.Server.Api;

/// <summary>The engine's sampled log-probabilities in the chat and the legacy completions shapes.</summary>
public sealed class LogprobFormatter(TextTokenizer tokenizer)
{
    public ChatLogprobs Chat(IEnumerable<TokenEvent> tokens) =>
        new([.. tokens.Select(t => new TokenLogprobOut(
            Text(t.Token),
            t.Sample.Logprob,
            Bytes(t.Token),
            [.. (t.Sample.TopLogprobs ?? []).Select(a => new TopLogprobOut(Text(a.TokenId), a.Logprob, Bytes(a.TokenId)))]))]);

    public CompletionLogprobs Completion(IReadOnlyList<TokenEvent> tokens, int textOffset)
    {
        var offsets = new List<int>();
        int offset = textOffset;
        foreach (var t in tokens)
        {
            offsets.Add(offset);
            offset += Text(t.Token).Length;
        }

        return new CompletionLogprobs(
            [.. tokens.Select(t => Text(t.Token))],
            [.. tokens.Select(t => t.Sample.Logprob)],
            [.. tokens.Select(t => (t.Sample.TopLogprobs ?? []).GroupBy(a => Text(a.TokenId)).ToDictionary(g => g.Key, g => g.First().Logprob))],
            offsets);
    }

    private string Text(int id) => tokenizer.Decode([id]);

    private int[] Bytes(int id) => [.. tokenizer.TokenBytes(id).ToArray().Select(b => (int)b)];
}
