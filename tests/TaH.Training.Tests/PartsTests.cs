using System.Buffers.Binary;
using System.IO.Compression;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.TaH;
using TaH.Engine.Tokenization;
using TaH.Training.Data;
using TaH.Training.Model;
using TaH.Training.Reporting;
using TaH.Training.Training;

namespace TaH.Training.Tests;

/// <summary>The pieces around the model: schedule, task, tokenizer, labels, PNG.</summary>
public class PartsTests
{
    [Fact]
    public void TheScheduleWarmsUpLinearlyThenFollowsTheCosineToItsFloor()
    {
        var options = new TrainOptions { Steps = 100, LearningRate = 1.0, WarmupRatio = 0.1, MinLrRatio = 0.1 };
        Assert.Equal(0.1, options.LearningRateAt(0), 12);   // step 1 of 10 warmup steps
        Assert.Equal(1.0, options.LearningRateAt(9), 12);   // warmup ends at the peak
        Assert.Equal(0.55, options.LearningRateAt(55), 12); // half way through the cosine: 0.1 + 0.9 * 0.5
        Assert.Equal(0.1 + (0.9 * 0.5 * (1 + Math.Cos(Math.PI * 89 / 90))), options.LearningRateAt(99), 12);
    }

    [Theory]
    [InlineData(4821, 3967, new[] { true, false, false, false })]  // 8+9 carries into the thousands
    [InlineData(999, 1, new[] { true, true, true, false })]         // 1000: the carry ripples through every place
    [InlineData(1234, 4321, new[] { false, false, false, false })]
    public void CarriesAreFoundPerAnswerDigit(long a, long b, bool[] expected)
    {
        Assert.Equal(expected, new AdditionProblem(a, b).CarryIn());
    }

    [Fact]
    public void TheDemoTokenizerKeepsDigitsSingleAndRendersChatMl()
    {
        var tokenizer = TextTokenizer.Load(Helpers.TokenizerDirectory);
        var ids = tokenizer.Encode("What is 4821+3967?");
        Assert.Equal(["What", "Ġis", "Ġ", "4", "8", "2", "1", "+", "3", "9", "6", "7", "?"], ids.Select(i => tokenizer.IdToToken(i)));
        Assert.Equal("chatml", tokenizer.ChatTemplate!.Family);
        Assert.Equal("<|im_end|>", tokenizer.IdToToken(tokenizer.EosTokenId!.Value));

        var example = Example.FromChat(new AdditionProblem(4821, 3967).ToChat()["messages"]!.AsArray(), tokenizer, "test");
        string text = tokenizer.Decode(example.Tokens);
        Assert.Equal("<|im_start|>user\nWhat is 4821+3967?<|im_end|>\n<|im_start|>assistant\n8788<|im_end|>", text);

        // Trained: the positions that predict "8", "7", "8", "8" and the end token.
        var predicted = example.Tokens.Where((_, i) => i > 0 && example.Supervised[i - 1]).Select(t => tokenizer.Decode([t]));
        Assert.Equal(["8", "7", "8", "8", "<|im_end|>"], predicted);
    }

    [Fact]
    public void OracleLabelsMarkWhereTheEnginesGreedyPredictionIsWrong()
    {
        var tokenizer = TextTokenizer.Load(Helpers.TokenizerDirectory);
        var examples = Helpers.Problems(tokenizer, 6, seed: 5);
        using var dir = new TempDirectory();
        using (var reference = Helpers.TinyTaH(tokenizer.VocabSize))
        {
            TaHCheckpoint.Save(reference, dir.Path, Helpers.TokenizerDirectory, Stages.EosId(tokenizer));
        }

        using var model = TaHCheckpoint.Load(dir.Path);
        var labelled = OracleLabels.Label(model, examples, Stages.PadId(tokenizer), batchSize: 4);
        OracleLabels.Write(Path.Combine(dir.Path, "labels.jsonl"), labelled);
        var read = OracleLabels.Read(Path.Combine(dir.Path, "labels.jsonl"));

        // Independently: the engine's never-policy logits of each sequence.
        using var engine = ModelLoader.Load(dir.Path);
        for (int e = 0; e < examples.Count; e++)
        {
            var tokens = examples[e].Tokens;
            var records = Inspection.Run(engine, tokens, IterationPolicy.Never, greedySteps: 0).Prefill;
            for (int p = 0; p < tokens.Length; p++)
            {
                bool wrong = examples[e].Supervised[p] && ArgMax(records[p].FinalLogits) != tokens[p + 1];
                Assert.Equal(wrong, read[e].Hard![p]);
            }

            Assert.Equal(examples[e].Tokens, read[e].Tokens);
            Assert.Equal(examples[e].Supervised, read[e].Supervised);
        }

        Assert.Contains(read, e => e.Hard!.Any(h => h));
    }

    [Fact]
    public void PngFilesHoldThePixelsWithValidChunks()
    {
        using var dir = new TempDirectory();
        var canvas = new Canvas(7, 3);
        canvas.Set(2, 1, (10, 20, 30));
        string path = Path.Combine(dir.Path, "a.png");
        canvas.Save(path);
        byte[] png = File.ReadAllBytes(path);

        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, png[..8]);
        Assert.Equal(7, BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16)));
        Assert.Equal(3, BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20)));
        Assert.Equal(new byte[] { 0xAE, 0x42, 0x60, 0x82 }, png[^4..]); // the CRC every IEND chunk has

        int idatLength = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(33));
        Assert.Equal("IDAT", System.Text.Encoding.ASCII.GetString(png, 37, 4));
        using var inflated = new MemoryStream();
        using (var zlib = new ZLibStream(new MemoryStream(png, 41, idatLength), CompressionMode.Decompress))
        {
            zlib.CopyTo(inflated);
        }

        byte[] raw = inflated.ToArray();
        Assert.Equal(3 * (1 + (7 * 3)), raw.Length);
        int pixel = (1 * (1 + 21)) + 1 + (2 * 3);
        Assert.Equal(new byte[] { 10, 20, 30 }, raw[pixel..(pixel + 3)]);
        Assert.Equal(255, raw[2]);
    }

    private static int ArgMax(float[] values) => Array.IndexOf(values, values.Max());
}
