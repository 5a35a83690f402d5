using TorchSharp;

namespace TaH.Engine.Checkpoints;

/// <summary>The storage classes torch.save names in a tensor's persistent id, and their element types.</summary>
internal static class TorchStorageTypes
{
    private static readonly (string Class, torch.ScalarType Type, int Size)[] Known =
    [
        ("FloatStorage", torch.ScalarType.Float32, 4),
        ("DoubleStorage", torch.ScalarType.Float64, 8),
        ("HalfStorage", torch.ScalarType.Float16, 2),
        ("BFloat16Storage", torch.ScalarType.BFloat16, 2),
        ("LongStorage", torch.ScalarType.Int64, 8),
        ("IntStorage", torch.ScalarType.Int32, 4),
        ("ShortStorage", torch.ScalarType.Int16, 2),
        ("CharStorage", torch.ScalarType.Int8, 1),
        ("ByteStorage", torch.ScalarType.Byte, 1),
        ("BoolStorage", torch.ScalarType.Bool, 1),
        ("ComplexFloatStorage", torch.ScalarType.ComplexFloat32, 8),
        ("ComplexDoubleStorage", torch.ScalarType.ComplexFloat64, 16),
        // Untyped storages count bytes.
        ("UntypedStorage", torch.ScalarType.Byte, 1),
    ];

    internal static bool TryParse(PyGlobal storageClass, out torch.ScalarType type, out int elementSize)
    {
        // Old checkpoints of CUDA tensors name torch.cuda.FloatStorage and the like.
        if (storageClass.Module is "torch" or "torch.cuda" or "torch.storage")
        {
            foreach (var known in Known)
            {
                if (known.Class == storageClass.Name)
                {
                    type = known.Type;
                    elementSize = known.Size;
                    return true;
                }
            }
        }

        type = default;
        elementSize = 0;
        return false;
    }

    internal static PyGlobal ClassFor(torch.ScalarType type)
    {
        foreach (var known in Known)
        {
            if (known.Type == type)
            {
                return new PyGlobal("torch", known.Class);
            }
        }

        throw new ArgumentException($"torch.save has no storage class for dtype {type}", nameof(type));
    }
}
