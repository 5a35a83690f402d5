using System.Buffers.Binary;
using System.Collections;
using System.Numerics;
using System.Text;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Checkpoints.Writing;

/// <summary>How a tensor's storage appears in the pickle: its record key, storage class and element count.</summary>
internal readonly record struct PickledStorage(string Key, PyGlobal StorageClass, long Numel);

/// <summary>
/// Writes the object model of <see cref="PickleReader"/> as a protocol-2 pickle the way Python's
/// pickler does for torch.save (same opcodes and memo numbering), tensors as
/// torch._utils._rebuild_tensor_v2 calls over persistent storage ids.
/// </summary>
internal sealed class PickleWriter
{
    private static readonly PyGlobal OrderedDictClass = new("collections", "OrderedDict");
    private static readonly PyGlobal RebuildTensor = new("torch._utils", "_rebuild_tensor_v2");
    private static readonly PyGlobal CodecsEncode = new("_codecs", "encode");
    private static readonly PyGlobal BytesClass = new("__builtin__", "bytes");

    private readonly MemoryStream _out = new();
    private readonly Func<torch.Tensor, PickledStorage> _storageOf;

    // Python memoizes by identity; strings and globals are deduplicated by value here, which is what
    // Python's interning and its single class objects produce in practice.
    private readonly Dictionary<object, int> _memoByValue = [];
    private readonly Dictionary<object, int> _memoByReference = new(ReferenceEqualityComparer.Instance);

    private PickleWriter(Func<torch.Tensor, PickledStorage> storageOf)
    {
        _storageOf = storageOf;
    }

    /// <summary>Pickles <paramref name="payload"/>; <paramref name="storageOf"/> is asked once per distinct tensor.</summary>
    internal static byte[] Write(object? payload, Func<torch.Tensor, PickledStorage> storageOf)
    {
        var writer = new PickleWriter(storageOf);
        writer._out.Write([0x80, 2]); // PROTO 2
        writer.Save(payload);
        writer._out.WriteByte((byte)'.');
        return writer._out.ToArray();
    }

    private void Save(object? value)
    {
        if (value is not null && TryGetMemo(value, out int index))
        {
            WriteGet(index);
            return;
        }

        switch (value)
        {
            case null:
                _out.WriteByte((byte)'N');
                break;
            case bool b:
                _out.WriteByte(b ? (byte)0x88 : (byte)0x89);
                break;
            case long or int or short or sbyte or byte or uint or ushort:
                SaveInt(Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture));
                break;
            case double or float:
                Span<byte> number = stackalloc byte[9];
                number[0] = (byte)'G';
                BinaryPrimitives.WriteDoubleBigEndian(number[1..], Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture));
                _out.Write(number);
                break;
            case string text:
                SaveString(text);
                break;
            case byte[] bytes:
                // Protocol 2 has no bytes opcode; Python writes bytes as these calls.
                if (bytes.Length == 0)
                {
                    SaveReduce(BytesClass, [], bytes);
                }
                else
                {
                    SaveReduce(CodecsEncode, [Encoding.Latin1.GetString(bytes), "latin1"], bytes);
                }

                break;
            case object?[] tuple:
                SaveTuple(tuple);
                break;
            case PyDict dict:
                SaveDict(dict);
                break;
            case PyGlobal global:
                _out.WriteByte((byte)'c');
                _out.Write(Encoding.UTF8.GetBytes($"{global.Module}\n{global.Name}\n"));
                Memoize(global);
                break;
            case PyObject obj:
                SaveReduce(obj.Type, obj.Args, obj);
                if (obj.ListItems.Count > 0)
                {
                    SaveAppends(obj.ListItems);
                }

                if (obj.DictItems.Count > 0)
                {
                    SaveSetItems(obj.DictItems);
                }

                if (obj.State is not null)
                {
                    Save(obj.State);
                    _out.WriteByte((byte)'b'); // BUILD
                }

                break;
            case torch.Tensor tensor:
                SaveTensor(tensor);
                break;
            case IDictionary dictionary:
                _out.WriteByte((byte)'}');
                Memoize(dictionary);
                var converted = new PyDict();
                foreach (DictionaryEntry entry in dictionary)
                {
                    converted[entry.Key] = entry.Value;
                }

                SaveSetItems(converted);
                break;
            case IList list and not Array:
                _out.WriteByte((byte)']');
                Memoize(list);
                SaveAppends(list);
                break;
            default:
                throw new ArgumentException(
                    $"a {value.GetType().Name} cannot be saved; use PyDict, List<object?>, object?[] (tuple), string, long, double, bool, null, byte[], PyGlobal, PyObject or torch.Tensor");
        }
    }

    private void SaveInt(long value)
    {
        if (value is >= 0 and <= 0xff)
        {
            _out.Write([(byte)'K', (byte)value]);
        }
        else if (value is >= 0 and <= 0xffff)
        {
            _out.WriteByte((byte)'M');
            Span<byte> buffer = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(buffer, (ushort)value);
            _out.Write(buffer);
        }
        else if (value is >= int.MinValue and <= int.MaxValue)
        {
            _out.WriteByte((byte)'J');
            Span<byte> buffer = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(buffer, (int)value);
            _out.Write(buffer);
        }
        else
        {
            // LONG1: minimal little-endian two's complement, as pickle.encode_long writes it.
            byte[] bytes = new BigInteger(value).ToByteArray(isUnsigned: false, isBigEndian: false);
            _out.Write([0x8a, (byte)bytes.Length]);
            _out.Write(bytes);
        }
    }

    private void SaveString(string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        _out.WriteByte((byte)'X'); // BINUNICODE
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)bytes.Length);
        _out.Write(length);
        _out.Write(bytes);
        Memoize(text);
    }

    private void SaveTuple(object?[] tuple)
    {
        if (tuple.Length == 0)
        {
            _out.WriteByte((byte)')'); // EMPTY_TUPLE, never memoized
            return;
        }

        if (tuple.Length <= 3)
        {
            foreach (var item in tuple)
            {
                Save(item);
            }

            _out.WriteByte((byte)(0x84 + tuple.Length)); // TUPLE1..TUPLE3
        }
        else
        {
            _out.WriteByte((byte)'(');
            foreach (var item in tuple)
            {
                Save(item);
            }

            _out.WriteByte((byte)'t');
        }

        Memoize(tuple);
    }

    private void SaveDict(PyDict dict)
    {
        if (dict.IsOrderedDict)
        {
            SaveReduce(OrderedDictClass, [], dict);
        }
        else
        {
            _out.WriteByte((byte)'}');
            Memoize(dict);
        }

        SaveSetItems(dict);
        if (dict.Attributes is { } attributes)
        {
            Save(attributes);
            _out.WriteByte((byte)'b'); // BUILD
        }
    }

    private void SaveTensor(torch.Tensor tensor)
    {
        var storage = _storageOf(tensor);
        var shape = tensor.shape;
        var stride = new object?[shape.Length];
        long step = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            stride[i] = step;
            step *= Math.Max(shape[i], 1);
        }

        Save(RebuildTensor);
        _out.WriteByte((byte)'(');
        Save(new object?[] { "storage", storage.StorageClass, storage.Key, "cpu", storage.Numel });
        _out.WriteByte((byte)'Q'); // BINPERSID
        SaveInt(0); // storage offset
        Save(shape.Select(d => (object?)d).ToArray());
        Save(stride);
        Save(tensor.requires_grad);
        Save(new PyDict(isOrderedDict: true)); // backward hooks
        _out.WriteByte((byte)'t');
        Memoize(new object()); // the argument tuple
        _out.WriteByte((byte)'R');
        Memoize(tensor);
    }

    private void SaveReduce(PyGlobal callable, object?[] args, object result)
    {
        Save(callable);
        Save(args);
        _out.WriteByte((byte)'R');
        Memoize(result);
    }

    private void SaveAppends(IList items)
    {
        // Python batches 1000 items per APPENDS, and a lone item as APPEND.
        for (int start = 0; start < items.Count; start += 1000)
        {
            int count = Math.Min(1000, items.Count - start);
            if (count == 1)
            {
                Save(items[start]);
                _out.WriteByte((byte)'a');
                continue;
            }

            _out.WriteByte((byte)'(');
            for (int i = start; i < start + count; i++)
            {
                Save(items[i]);
            }

            _out.WriteByte((byte)'e');
        }
    }

    private void SaveSetItems(PyDict dict)
    {
        for (int start = 0; start < dict.Count; start += 1000)
        {
            int count = Math.Min(1000, dict.Count - start);
            if (count == 1)
            {
                Save(dict.Keys[start]);
                Save(dict.Values[start]);
                _out.WriteByte((byte)'s');
                continue;
            }

            _out.WriteByte((byte)'(');
            for (int i = start; i < start + count; i++)
            {
                Save(dict.Keys[i]);
                Save(dict.Values[i]);
            }

            _out.WriteByte((byte)'u');
        }
    }

    private bool TryGetMemo(object value, out int index) => value is string or PyGlobal
        ? _memoByValue.TryGetValue(value, out index)
        : _memoByReference.TryGetValue(value, out index);

    private void Memoize(object value)
    {
        int index = _memoByValue.Count + _memoByReference.Count;
        if (value is string or PyGlobal)
        {
            _memoByValue[value] = index;
        }
        else
        {
            _memoByReference[value] = index;
        }

        WriteIndexed(index, (byte)'q', (byte)'r');
    }

    private void WriteGet(int index) => WriteIndexed(index, (byte)'h', (byte)'j');

    private void WriteIndexed(int index, byte shortOp, byte longOp)
    {
        if (index < 256)
        {
            _out.Write([shortOp, (byte)index]);
        }
        else
        {
            Span<byte> buffer = stackalloc byte[5];
            buffer[0] = longOp;
            BinaryPrimitives.WriteInt32LittleEndian(buffer[1..], index);
            _out.Write(buffer);
        }
    }
}
