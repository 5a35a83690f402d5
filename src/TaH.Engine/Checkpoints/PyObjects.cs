using System.Collections;
using System.Diagnostics.CodeAnalysis;
using TorchSharp;

namespace TaH.Engine.Checkpoints;

/// <summary>
/// A Python dict (or collections.OrderedDict) from a pickle: insertion-ordered, keys compared the
/// way Python compares str, int, float, bool and tuple keys.
/// </summary>
public sealed class PyDict : IEnumerable<KeyValuePair<object, object?>>
{
    private readonly List<object> _keys = [];
    private readonly List<object?> _values = [];
    private readonly Dictionary<object, int> _index = new(PyKeyComparer.Instance);

    public PyDict(bool isOrderedDict = false)
    {
        IsOrderedDict = isOrderedDict;
    }

    /// <summary>True for a collections.OrderedDict (what state_dict() returns), false for a plain dict.</summary>
    public bool IsOrderedDict { get; }

    /// <summary>The object's attributes set by the pickle (e.g. a state dict's _metadata), or null.</summary>
    public PyDict? Attributes { get; set; }

    public int Count => _keys.Count;

    public IReadOnlyList<object> Keys => _keys;

    public IReadOnlyList<object?> Values => _values;

    /// <summary>Gets a value (throws <see cref="KeyNotFoundException"/>), or adds or replaces one in place.</summary>
    public object? this[object key]
    {
        get => _index.TryGetValue(key, out int i) ? _values[i] : throw new KeyNotFoundException($"key '{key}' is not in the dict");
        set
        {
            ArgumentNullException.ThrowIfNull(key);
            if (_index.TryGetValue(key, out int i))
            {
                _values[i] = value;
            }
            else
            {
                _index.Add(key, _keys.Count);
                _keys.Add(key);
                _values.Add(value);
            }
        }
    }

    public bool ContainsKey(object key) => _index.ContainsKey(key);

    public bool TryGetValue(object key, out object? value)
    {
        if (_index.TryGetValue(key, out int i))
        {
            value = _values[i];
            return true;
        }

        value = null;
        return false;
    }

    /// <summary>The value under <paramref name="key"/> as a <typeparamref name="T"/>, or false when absent or of another type.</summary>
    public bool TryGet<T>(object key, [MaybeNullWhen(false)] out T value)
    {
        if (TryGetValue(key, out object? raw) && raw is T typed)
        {
            value = typed;
            return true;
        }

        value = default;
        return false;
    }

    public IEnumerator<KeyValuePair<object, object?>> GetEnumerator()
    {
        for (int i = 0; i < _keys.Count; i++)
        {
            yield return new KeyValuePair<object, object?>(_keys[i], _values[i]);
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => $"{(IsOrderedDict ? "OrderedDict" : "dict")} with {Count} items";
}

/// <summary>
/// A reference to a Python global that is kept as a name, e.g. the dtype <c>torch.bfloat16</c> or a
/// class whose instances could not be rebuilt.
/// </summary>
public sealed record PyGlobal(string Module, string Name)
{
    private static readonly (string Name, torch.ScalarType Type)[] Dtypes =
    [
        ("float32", torch.ScalarType.Float32),
        ("float64", torch.ScalarType.Float64),
        ("float16", torch.ScalarType.Float16),
        ("bfloat16", torch.ScalarType.BFloat16),
        ("int64", torch.ScalarType.Int64),
        ("int32", torch.ScalarType.Int32),
        ("int16", torch.ScalarType.Int16),
        ("int8", torch.ScalarType.Int8),
        ("uint8", torch.ScalarType.Byte),
        ("bool", torch.ScalarType.Bool),
        ("complex64", torch.ScalarType.ComplexFloat32),
        ("complex128", torch.ScalarType.ComplexFloat64),
    ];

    /// <summary>The global a torch dtype pickles as, e.g. <c>torch.bfloat16</c>.</summary>
    public static PyGlobal ForDtype(torch.ScalarType type)
    {
        foreach (var (name, known) in Dtypes)
        {
            if (known == type)
            {
                return new PyGlobal("torch", name);
            }
        }

        throw new ArgumentException($"no torch dtype name is known for {type}", nameof(type));
    }

    /// <summary>True when this global is a torch dtype such as <c>torch.float32</c>.</summary>
    public bool TryGetDtype(out torch.ScalarType type)
    {
        if (Module == "torch")
        {
            foreach (var (name, known) in Dtypes)
            {
                if (name == Name)
                {
                    type = known;
                    return true;
                }
            }
        }

        type = default;
        return false;
    }

    public override string ToString() => $"{Module}.{Name}";
}

/// <summary>
/// An object the pickle builds by calling a class or function this reader does not interpret
/// (REDUCE / NEWOBJ), kept with its arguments, the items added to it and its BUILD state.
/// A Python set is one of these: <c>builtins.set</c> with one argument, the list of its items.
/// </summary>
public sealed class PyObject(PyGlobal type, object?[] args)
{
    public PyGlobal Type { get; } = type;

    public object?[] Args { get; } = args;

    /// <summary>The state given by BUILD (often a dict of attributes), or null.</summary>
    public object? State { get; set; }

    /// <summary>Items appended to the object (APPEND/APPENDS).</summary>
    public List<object?> ListItems { get; } = [];

    /// <summary>Items set on the object (SETITEM/SETITEMS).</summary>
    public PyDict DictItems { get; } = new();

    public override string ToString() => $"{Type}({Args.Length} args)";
}

/// <summary>Python's equality for dict keys: 1 == 1.0 == True, tuples and bytes by value.</summary>
internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static readonly PyKeyComparer Instance = new();

    public new bool Equals(object? x, object? y)
    {
        if (ReferenceEquals(x, y))
        {
            return true;
        }

        if (x is null || y is null)
        {
            return false;
        }

        if (TryNumber(x, out double dx) && TryNumber(y, out double dy))
        {
            return x is double || y is double ? dx.Equals(dy) : ToLong(x) == ToLong(y);
        }

        return (x, y) switch
        {
            (string a, string b) => string.Equals(a, b, StringComparison.Ordinal),
            (byte[] a, byte[] b) => a.AsSpan().SequenceEqual(b),
            (object?[] a, object?[] b) => a.Length == b.Length && a.Zip(b).All(p => p.First is null ? p.Second is null : Equals(p.First, p.Second)),
            _ => x.Equals(y),
        };
    }

    public int GetHashCode(object obj)
    {
        switch (obj)
        {
            case double d when d == Math.Floor(d) && d >= long.MinValue && d <= long.MaxValue:
                return ((long)d).GetHashCode();
            case double d:
                return d.GetHashCode();
            case long or bool:
                return ToLong(obj).GetHashCode();
            case string s:
                return StringComparer.Ordinal.GetHashCode(s);
            case byte[] bytes:
                {
                    var hash = new HashCode();
                    hash.AddBytes(bytes);
                    return hash.ToHashCode();
                }

            case object?[] items:
                {
                    var hash = new HashCode();
                    foreach (var item in items)
                    {
                        hash.Add(item is null ? 0 : GetHashCode(item));
                    }

                    return hash.ToHashCode();
                }

            default:
                return obj.GetHashCode();
        }
    }

    private static bool TryNumber(object value, out double number)
    {
        switch (value)
        {
            case long l:
                number = l;
                return true;
            case bool b:
                number = b ? 1 : 0;
                return true;
            case double d:
                number = d;
                return true;
            default:
                number = 0;
                return false;
        }
    }

    private static long ToLong(object value) => value switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => 0,
    };
}
