using TaH.Engine.Checkpoints;
using TaH.Engine.Config;
using TorchSharp;

namespace TaH.Engine.Tests.Loading;

/// <summary>The one description of the decider's state dict, against the fixtures that torch.save wrote.</summary>
public class DeciderLayoutTests
{
    [Theory]
    [InlineData("a")] // normalize_input false
    [InlineData("b")] // normalize_input true, a block that changes width
    public void LayoutNamesEveryTensorOfTheReferenceStateDictWithItsShape(string checkpoint)
    {
        string dir = Fixtures.TinyCheckpoint(checkpoint);
        var layout = new DeciderLayout(TaHConfig.Load(Path.Combine(dir, "tah_config.json")).Decider!);
        var payload = (PyDict)TorchCheckpoint.Load(Path.Combine(dir, "iter_decider.bin"))!;
        var state = payload.TryGet<PyDict>("state_dict", out var sd) ? sd : throw new InvalidOperationException("no state_dict");
        try
        {
            var stored = state.Where(kv => (string)kv.Key != "threshold")
                .ToDictionary(kv => (string)kv.Key, kv => ((torch.Tensor)kv.Value!).shape);
            Assert.Equal(stored.Keys.Order(StringComparer.Ordinal), layout.Parameters.Select(p => p.Name).Order(StringComparer.Ordinal));
            foreach (var p in layout.Parameters)
            {
                Assert.Equal(stored[p.Name], p.Shape);
            }

            Assert.Equal(checkpoint == "b", layout.Parameters.Any(p => p.Name.StartsWith(DeciderLayout.LayerNormHiddenStates, StringComparison.Ordinal)));
            Assert.All(Enumerable.Range(0, layout.BlockCount), j => Assert.Equal(layout.HasDimChange(j), stored.ContainsKey($"{DeciderLayout.BlockDimChange(j)}.weight")));
        }
        finally
        {
            foreach (var value in state.Values)
            {
                (value as torch.Tensor)?.Dispose();
            }
        }
    }
}
