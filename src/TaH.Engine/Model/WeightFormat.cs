namespace TaH.Engine.Model;

/// <summary>
/// How the weights of the linear maps (every projection of the base model, the lm head and the
/// embedding it is tied to, the decider's MLP) are held on the CPU. Norms, biases and LoRA stay
/// fp32 (LoRA bf16 where that is exact); activations are fp32 throughout.
/// </summary>
public enum WeightFormat
{
    /// <summary>fp32, multiplied by torch's <c>linear</c>: the reference.</summary>
    Fp32,

    /// <summary>bf16 (2 bytes per weight), widened in registers by the project's kernels.</summary>
    Bf16,

    /// <summary>GGUF's Q8_0 (34 bytes per 32 weights), int8 dot products in the project's kernels.</summary>
    Q8_0,

    /// <summary>GGUF's Q4_0 (18 bytes per 32 weights), nibble-by-int8 dot products in the project's kernels.</summary>
    Q4_0,
}

public static class WeightFormats
{
    public static string Name(this WeightFormat format) => format switch
    {
        WeightFormat.Bf16 => "bf16",
        WeightFormat.Q8_0 => "q8_0",
        WeightFormat.Q4_0 => "q4_0",
        _ => "fp32",
    };

    /// <summary>A model's formats as the load lines name them: <c>q4_0</c>, or <c>q4_0 (decider q8_0)</c> when the decider's differs.</summary>
    public static string Name(WeightFormat weights, WeightFormat? decider) =>
        decider is { } d && d != weights ? $"{weights.Name()} (decider {d.Name()})" : weights.Name();

    /// <summary><c>fp32</c>, <c>bf16</c>, <c>q8_0</c> or <c>q4_0</c>; anything else is refused naming the choices and <paramref name="option"/>.</summary>
    public static WeightFormat Parse(string text, string option = "--weights") => text.ToLowerInvariant() switch
    {
        "fp32" or "f32" => WeightFormat.Fp32,
        "bf16" => WeightFormat.Bf16,
        "q8_0" => WeightFormat.Q8_0,
        "q4_0" => WeightFormat.Q4_0,
        _ => throw new ArgumentException($"{option} must be fp32, bf16, q8_0 or q4_0 (got '{text}')"),
    };
}
