using System.Text.Json;
using System.Text.Json.Nodes;
using TaH.Engine.Checkpoints;
using static TorchSharp.torch;

namespace TaH.Checkpoints.Writing;

/// <summary>
/// <c>iter_decider.bin</c> as the reference's <c>save_iter_decider</c> writes it: a torch.save of
/// {class, init_args, state_dict}.
/// </summary>
public static class DeciderFile
{
    /// <summary>
    /// Writes the file into <paramref name="directory"/>. <paramref name="initArgs"/> are the
    /// constructor arguments as tah_config.json holds them (its dtype object becomes
    /// <paramref name="dtype"/>).
    /// </summary>
    public static void Save(string directory, PyDict state, JsonObject initArgs, ScalarType dtype)
    {
        var args = new PyDict();
        foreach (var (key, value) in initArgs)
        {
            args[key] = value switch
            {
                JsonArray a => a.Select(n => (object?)(long)n!.GetValue<int>()).ToList(),
                JsonObject => PyGlobal.ForDtype(dtype),
                JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => (bool)v,
                JsonValue v when v.TryGetValue(out int i) => (long)i,
                JsonValue v => (double)v,
                _ => null,
            };
        }

        var payload = new PyDict();
        payload["class"] = "MLPIterDecider";
        payload["init_args"] = args;
        payload["state_dict"] = state;
        TorchCheckpointWriter.Save(Path.Combine(directory, "iter_decider.bin"), payload);
    }
}
