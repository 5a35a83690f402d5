using System.Text;
using System.Text.Json.Nodes;
using TaH.Training.Model;

namespace TaH.Training.Data;

/// <summary>
/// The demo's own byte-level BPE tokenizer: the 256 byte tokens, a handful of merges for the words
/// of the chat ("What", " is", the role names), and the ChatML special tokens. Qwen3's pre-tokenizer
/// regex splits numbers into single digits, so every digit is its own token.
/// </summary>
public static class DemoTokenizer
{
    public const string EndOfText = "<|endoftext|>";
    public const string ImStart = "<|im_start|>";
    public const string ImEnd = "<|im_end|>";

    /// <summary>Qwen3's Split regex (digits one by one).</summary>
    private const string Qwen3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Plain ChatML, one of the templates the engine renders.</summary>
    public const string ChatMlTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private static readonly string[] Words = ["What", " is", "user", "assistant", "system"];

    /// <summary>Writes tokenizer.json and tokenizer_config.json into <paramref name="directory"/>.</summary>
    public static void Write(string directory)
    {
        Directory.CreateDirectory(directory);
        var alphabet = ByteAlphabet();
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++)
        {
            vocab[alphabet[b].ToString()] = b;
        }

        // Each word merges left to right, one character at a time; ids rise with merge rank.
        var merges = new JsonArray();
        int next = 256;
        foreach (string word in Words)
        {
            string[] symbols = [.. Encoding.UTF8.GetBytes(word).Select(b => alphabet[b].ToString())];
            string left = symbols[0];
            foreach (string right in symbols.Skip(1))
            {
                merges.Add(new JsonArray(left, right));
                left += right;
                vocab[left] = next++;
            }
        }

        var added = new JsonArray();
        var decoder = new JsonObject();
        foreach (string special in new[] { EndOfText, ImStart, ImEnd })
        {
            added.Add(new JsonObject
            {
                ["id"] = next, ["content"] = special, ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            });
            decoder[next.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["content"] = special, ["lstrip"] = false, ["normalized"] = false, ["rstrip"] = false,
                ["single_word"] = false, ["special"] = true,
            };
            next++;
        }

        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false };
        TaHCheckpoint.WriteJson(Path.Combine(directory, "tokenizer.json"), new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = Qwen3Pattern },
                        ["behavior"] = "Isolated", ["invert"] = false,
                    },
                    byteLevel.DeepClone()),
            },
            ["post_processor"] = byteLevel.DeepClone(),
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "", ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = merges,
            },
        });
        TaHCheckpoint.WriteJson(Path.Combine(directory, "tokenizer_config.json"), new JsonObject
        {
            ["add_bos_token"] = false,
            ["add_prefix_space"] = false,
            ["added_tokens_decoder"] = decoder,
            ["bos_token"] = null,
            ["chat_template"] = ChatMlTemplate,
            ["clean_up_tokenization_spaces"] = false,
            ["eos_token"] = ImEnd,
            ["errors"] = "replace",
            ["model_max_length"] = 512,
            ["pad_token"] = EndOfText,
            ["split_special_tokens"] = false,
            ["tokenizer_class"] = "Qwen2Tokenizer",
            ["unk_token"] = null,
        });
    }

    /// <summary>GPT-2's byte-to-character map: printable bytes stand for themselves, the rest shift past 255.</summary>
    private static char[] ByteAlphabet()
    {
        var map = new char[256];
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + shifted++);
        }

        return map;
    }
}
