using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using TaH.Checkpoints.Writing;
using TaH.Engine.Tokenization;

namespace TaH.Server.Cli;

/// <summary>
/// <c>tah tokenize</c>: fills in <c>ids</c> (and <c>rendered</c> for chat conversations) of a file
/// in the tokenizer golden format, using the model directory's tokenizer and chat template.
/// </summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        model.Description = "directory holding tokenizer.json and tokenizer_config.json";
        var input = new Option<string>("--in") { Description = "JSON with 'encode' texts and/or 'chat' conversations", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "JSON file to write", Required = true };
        var command = new Command("tokenize", "encode texts and render chat conversations with a model's tokenizer (golden format)")
        {
            model, input, output,
        };
        command.SetAction(result => CliAction.Run(() =>
        {
            var tokenizer = TextTokenizer.Load(result.GetValue(model)!);
            string inPath = result.GetValue(input)!;
            var document = JsonNode.Parse(File.ReadAllText(inPath))
                ?? throw new ArgumentException($"{inPath}: empty JSON document");
            var filled = TokenizerGoldenFile.Fill(document, tokenizer);
            var options = new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
            File.WriteAllText(result.GetValue(output)!, filled.ToJsonString(options));
            return 0;
        }));
        return command;
    }
}
