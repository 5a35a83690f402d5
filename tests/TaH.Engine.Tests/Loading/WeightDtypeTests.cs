using TaH.Checkpoints.Writing;
using TaH.Engine.Checkpoints;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.TaH;
using TorchSharp;

namespace TaH.Engine.Tests.Loading;

/// <summary>
/// Weights stored as fp16 or bf16 compute in fp32: the same as an fp32 checkpoint whose values
/// were rounded to that type (an independent way to produce the expected numbers).
/// </summary>
public class WeightDtypeTests
{
    [Theory]
    [InlineData(torch.ScalarType.Float16)]
    [InlineData(torch.ScalarType.BFloat16)]
    public void HalfPrecisionWeightsEqualTheirRoundedFp32Copy(torch.ScalarType stored)
    {
        using var half = new TempDirectory();
        using var rounded = new TempDirectory();
        string source = Fixtures.TinyCheckpoint("a");
        foreach (var dir in new[] { half, rounded })
        {
            foreach (string file in Directory.GetFiles(source, "*", SearchOption.AllDirectories).Where(f => Path.GetFileName(f) != "model.safetensors" || Path.GetDirectoryName(f) != source))
            {
                string target = Path.Combine(dir.Path, Path.GetRelativePath(source, file));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(file, target);
            }
        }

        using (var weights = SafeTensorsCheckpoint.OpenDirectory(source))
        {
            var halfTensors = new List<KeyValuePair<string, torch.Tensor>>();
            var roundedTensors = new List<KeyValuePair<string, torch.Tensor>>();
            foreach (string name in weights.Names)
            {
                using var original = weights.Load(name);
                var h = original.to(stored);
                halfTensors.Add(new(name, h));
                roundedTensors.Add(new(name, h.to(torch.ScalarType.Float32)));
            }

            SafeTensorsWriter.Write(half.File("model.safetensors"), halfTensors);
            SafeTensorsWriter.Write(rounded.File("model.safetensors"), roundedTensors);
            foreach (var (_, t) in halfTensors.Concat(roundedTensors))
            {
                t.Dispose();
            }
        }

        using var fromHalf = ModelLoader.Load(half.Path);
        using var fromRounded = ModelLoader.Load(rounded.Path);
        int[] prompt = [5, 77, 301, 42, 9, 250];
        var a = Inspection.Run(fromHalf, prompt, IterationPolicy.Always, 4);
        var b = Inspection.Run(fromRounded, prompt, IterationPolicy.Always, 4);
        Assert.Equal(b.GreedyTokens, a.GreedyTokens);
        for (int p = 0; p < prompt.Length; p++)
        {
            Assert.Equal(b.Prefill[p].FinalLogits, a.Prefill[p].FinalLogits);
        }
    }
}
