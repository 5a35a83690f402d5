using TorchSharp;

namespace TaH.Engine.Checkpoints;

/// <summary>One tensor as a safetensors header describes it.</summary>
/// <param name="Name">The tensor's name.</param>
/// <param name="DType">The dtype as the file spells it ("BF16", "F32", ...).</param>
/// <param name="ScalarType">The matching TorchSharp element type.</param>
/// <param name="Shape">The tensor's shape (empty for a scalar).</param>
/// <param name="DataBegin">Start of its bytes, relative to the data area after the header.</param>
/// <param name="DataEnd">End (exclusive) of its bytes, relative to the data area.</param>
public sealed record TensorEntry(
    string Name, string DType, torch.ScalarType ScalarType, IReadOnlyList<long> Shape, long DataBegin, long DataEnd)
{
    public long ByteLength => DataEnd - DataBegin;

    public long NumberOfElements
    {
        get
        {
            long count = 1;
            foreach (var dim in Shape)
            {
                count *= dim;
            }

            return count;
        }
    }
}

/// <summary>The safetensors dtype names and what they mean to TorchSharp.</summary>
internal static class SafeTensorsDTypes
{
    private static readonly (string Name, torch.ScalarType Type, int Size)[] Known =
    [
        ("F64", torch.ScalarType.Float64, 8),
        ("F32", torch.ScalarType.Float32, 4),
        ("F16", torch.ScalarType.Float16, 2),
        ("BF16", torch.ScalarType.BFloat16, 2),
        ("I64", torch.ScalarType.Int64, 8),
        ("I32", torch.ScalarType.Int32, 4),
        ("I16", torch.ScalarType.Int16, 2),
        ("I8", torch.ScalarType.Int8, 1),
        ("U8", torch.ScalarType.Byte, 1),
        ("BOOL", torch.ScalarType.Bool, 1),
    ];

    internal static string SupportedList => string.Join(", ", Known.Select(k => k.Name));

    internal static bool TryParse(string name, out torch.ScalarType type, out int size)
    {
        foreach (var known in Known)
        {
            if (known.Name == name)
            {
                type = known.Type;
                size = known.Size;
                return true;
            }
        }

        type = default;
        size = 0;
        return false;
    }

    internal static bool TryGetName(torch.ScalarType type, out string name)
    {
        foreach (var known in Known)
        {
            if (known.Type == type)
            {
                name = known.Name;
                return true;
            }
        }

        name = "";
        return false;
    }
}
