using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Text;

namespace TaH.Engine.Checkpoints;

/// <summary>Interprets a call made by a pickle (REDUCE / NEWOBJ); returns false to leave it to the default.</summary>
internal delegate bool PickleCallHandler(PyGlobal callable, object?[] args, out object? result);

/// <summary>
/// A pickle interpreter (protocols 0-5, the opcodes torch.save and common writers use) that never
/// runs code: globals become <see cref="PyGlobal"/>s and calls it does not know become <see cref="PyObject"/>s.
/// Values: dict -> <see cref="PyDict"/>, list -> List&lt;object?&gt;, tuple -> object?[], str -> string,
/// int -> long, float -> double, bool, None -> null, bytes -> byte[].
/// </summary>
internal sealed class PickleReader
{
    private const int HighestProtocol = 5;
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly byte[] _data;
    private readonly string _path;
    private readonly string _record;
    private readonly Func<object?, object?> _persistentLoad;
    private readonly PickleCallHandler? _call;
    private readonly List<object?> _stack = [];
    private readonly List<int> _marks = [];
    private readonly Dictionary<long, object?> _memo = [];
    private int _pos;
    private int _opStart;

    private PickleReader(byte[] data, string path, string record, Func<object?, object?> persistentLoad, PickleCallHandler? call)
    {
        _data = data;
        _path = path;
        _record = record;
        _persistentLoad = persistentLoad;
        _call = call;
    }

    /// <summary>Unpickles <paramref name="data"/>; problems are reported against <paramref name="path"/> and <paramref name="record"/>.</summary>
    internal static object? Load(byte[] data, string path, string record, Func<object?, object?> persistentLoad,
        PickleCallHandler? call = null) =>
        new PickleReader(data, path, record, persistentLoad, call).Run();

    /// <summary>An error at the opcode being interpreted.</summary>
    internal CheckpointException Corrupt(string problem) =>
        new(_path, $"{_record} is corrupt at byte {_opStart}: {problem}");

    private object? Run()
    {
        while (true)
        {
            _opStart = _pos;
            byte op = ReadByte();
            switch (op)
            {
                case 0x80: // PROTO
                    int protocol = ReadByte();
                    if (protocol > HighestProtocol)
                    {
                        throw Corrupt($"pickle protocol {protocol} is not supported (at most {HighestProtocol})");
                    }

                    break;
                case 0x95: // FRAME: only a length hint
                    Take(8);
                    break;
                case (byte)'.': // STOP
                    return Pop();

                case (byte)'(': // MARK
                    _marks.Add(_stack.Count);
                    break;
                case (byte)'0': // POP
                    if (_stack.Count > FrameStart)
                    {
                        Pop();
                    }
                    else
                    {
                        PopMark();
                    }

                    break;
                case (byte)'1': // POP_MARK
                    PopMark();
                    break;
                case (byte)'2': // DUP
                    Push(Peek());
                    break;

                case (byte)'N':
                    Push(null);
                    break;
                case 0x88: // NEWTRUE
                    Push(true);
                    break;
                case 0x89: // NEWFALSE
                    Push(false);
                    break;
                case (byte)'J': // BININT
                    Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4)));
                    break;
                case (byte)'K': // BININT1
                    Push((long)ReadByte());
                    break;
                case (byte)'M': // BININT2
                    Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2)));
                    break;
                case 0x8a: // LONG1
                    Push(DecodeLong(Take(ReadByte())));
                    break;
                case 0x8b: // LONG4
                    Push(DecodeLong(Take(ReadLength(BinaryPrimitives.ReadInt32LittleEndian(Take(4))))));
                    break;
                case (byte)'I': // INT (text; "00"/"01" are False/True)
                    string intText = ReadLine();
                    Push(intText switch
                    {
                        "00" => (object)false,
                        "01" => true,
                        _ => ParseLong(intText),
                    });
                    break;
                case (byte)'L': // LONG (text)
                    Push(ParseLong(ReadLine().TrimEnd('L')));
                    break;
                case (byte)'G': // BINFLOAT (big-endian)
                    Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8)));
                    break;
                case (byte)'F': // FLOAT (text)
                    string floatText = ReadLine();
                    Push(double.TryParse(floatText, NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed)
                        ? parsed
                        : throw Corrupt($"'{floatText}' is not a float"));
                    break;

                case (byte)'X': // BINUNICODE
                    Push(DecodeText(Take(ReadLength(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))))));
                    break;
                case 0x8c: // SHORT_BINUNICODE
                    Push(DecodeText(Take(ReadByte())));
                    break;
                case 0x8d: // BINUNICODE8
                    Push(DecodeText(Take(ReadLength(BinaryPrimitives.ReadUInt64LittleEndian(Take(8))))));
                    break;
                case (byte)'T': // BINSTRING (a Python 2 str; torch.load decodes it as UTF-8)
                    Push(DecodeText(Take(ReadLength(BinaryPrimitives.ReadInt32LittleEndian(Take(4))))));
                    break;
                case (byte)'U': // SHORT_BINSTRING
                    Push(DecodeText(Take(ReadByte())));
                    break;
                case (byte)'B': // BINBYTES
                    Push(Take(ReadLength(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))).ToArray());
                    break;
                case (byte)'C': // SHORT_BINBYTES
                    Push(Take(ReadByte()).ToArray());
                    break;
                case 0x8e: // BINBYTES8
                case 0x96: // BYTEARRAY8
                    Push(Take(ReadLength(BinaryPrimitives.ReadUInt64LittleEndian(Take(8)))).ToArray());
                    break;

                case (byte)'}': // EMPTY_DICT
                    Push(new PyDict());
                    break;
                case (byte)'d': // DICT
                    var dict = new PyDict();
                    SetItems(dict, PopMark());
                    Push(dict);
                    break;
                case (byte)']': // EMPTY_LIST
                    Push(new List<object?>());
                    break;
                case (byte)'l': // LIST
                    Push(new List<object?>(PopMark()));
                    break;
                case (byte)')': // EMPTY_TUPLE
                    Push(Array.Empty<object?>());
                    break;
                case (byte)'t': // TUPLE
                    Push(PopMark().ToArray());
                    break;
                case 0x85: // TUPLE1
                    Push(new[] { Pop() });
                    break;
                case 0x86: // TUPLE2
                    {
                        var second = Pop();
                        Push(new[] { Pop(), second });
                        break;
                    }

                case 0x87: // TUPLE3
                    {
                        var third = Pop();
                        var second = Pop();
                        Push(new[] { Pop(), second, third });
                        break;
                    }

                case 0x8f: // EMPTY_SET
                    Push(new PyObject(new PyGlobal("builtins", "set"), [new List<object?>()]));
                    break;
                case 0x91: // FROZENSET
                    Push(new PyObject(new PyGlobal("builtins", "frozenset"), [new List<object?>(PopMark())]));
                    break;
                case 0x90: // ADDITEMS
                    {
                        var items = PopMark();
                        if (Peek() is PyObject { Args: [List<object?> members] })
                        {
                            members.AddRange(items);
                        }
                        else
                        {
                            throw Corrupt($"ADDITEMS applied to {Describe(Peek())}, not a set");
                        }

                        break;
                    }

                case (byte)'a': // APPEND
                    Append(Peek(), [Pop()]);
                    break;
                case (byte)'e': // APPENDS
                    {
                        var items = PopMark();
                        Append(Peek(), items);
                        break;
                    }

                case (byte)'s': // SETITEM
                    {
                        var value = Pop();
                        var key = Pop();
                        SetItems(Peek(), [key, value]);
                        break;
                    }

                case (byte)'u': // SETITEMS
                    {
                        var items = PopMark();
                        SetItems(Peek(), items);
                        break;
                    }

                case (byte)'c': // GLOBAL
                    {
                        string module = ReadLine();
                        string name = ReadLine();
                        Push(new PyGlobal(module, name));
                        break;
                    }

                case 0x93: // STACK_GLOBAL
                    {
                        var name = Pop();
                        var module = Pop();
                        if (module is not string moduleName || name is not string globalName)
                        {
                            throw Corrupt("STACK_GLOBAL needs a module name and a global name");
                        }

                        Push(new PyGlobal(moduleName, globalName));
                        break;
                    }

                case (byte)'R': // REDUCE
                    {
                        var args = Pop();
                        var callable = Pop();
                        Push(Call(callable, args));
                        break;
                    }

                case 0x81: // NEWOBJ
                    {
                        var args = Pop();
                        var cls = Pop();
                        Push(Call(cls, args));
                        break;
                    }

                case (byte)'b': // BUILD
                    {
                        var state = Pop();
                        Build(Peek(), state);
                        break;
                    }

                case (byte)'q': // BINPUT
                    _memo[ReadByte()] = Peek();
                    break;
                case (byte)'r': // LONG_BINPUT
                    _memo[BinaryPrimitives.ReadUInt32LittleEndian(Take(4))] = Peek();
                    break;
                case 0x94: // MEMOIZE
                    _memo[_memo.Count] = Peek();
                    break;
                case (byte)'p': // PUT
                    _memo[ParseLong(ReadLine())] = Peek();
                    break;
                case (byte)'h': // BINGET
                    Push(GetMemo(ReadByte()));
                    break;
                case (byte)'j': // LONG_BINGET
                    Push(GetMemo(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))));
                    break;
                case (byte)'g': // GET
                    Push(GetMemo(ParseLong(ReadLine())));
                    break;

                case (byte)'Q': // BINPERSID
                    Push(_persistentLoad(Pop()));
                    break;
                case (byte)'P': // PERSID
                    Push(_persistentLoad(ReadLine()));
                    break;

                default:
                    throw Corrupt($"unknown or unsupported pickle opcode 0x{op:X2}");
            }
        }
    }

    private int FrameStart => _marks.Count > 0 ? _marks[^1] : 0;

    private void Push(object? value) => _stack.Add(value);

    private object? Pop()
    {
        if (_stack.Count <= FrameStart)
        {
            throw Corrupt("the pickle stack is empty where a value is needed");
        }

        var value = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return value;
    }

    private object? Peek() =>
        _stack.Count > FrameStart ? _stack[^1] : throw Corrupt("the pickle stack is empty where a value is needed");

    private List<object?> PopMark()
    {
        if (_marks.Count == 0)
        {
            throw Corrupt("an opcode needs a MARK, but there is none");
        }

        int start = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        var items = _stack.GetRange(start, _stack.Count - start);
        _stack.RemoveRange(start, _stack.Count - start);
        return items;
    }

    private object? GetMemo(long index) =>
        _memo.TryGetValue(index, out var value) ? value : throw Corrupt($"memo entry {index} is used before it is stored");

    private object? Call(object? callable, object? args)
    {
        if (callable is not PyGlobal global)
        {
            throw Corrupt($"a call to {Describe(callable)}, which is not a class or function");
        }

        if (args is not object?[] arguments)
        {
            throw Corrupt($"the arguments of {global} are {Describe(args)}, not a tuple");
        }

        if (_call is not null && _call(global, arguments, out var result))
        {
            return result;
        }

        switch (global.Module, global.Name, arguments)
        {
            case ("collections", "OrderedDict", []):
                return new PyDict(isOrderedDict: true);
            case ("collections", "OrderedDict", [List<object?> pairs]):
                {
                    var ordered = new PyDict(isOrderedDict: true);
                    foreach (var pair in pairs)
                    {
                        if (pair is not object?[] { Length: 2 } kv)
                        {
                            throw Corrupt("OrderedDict is built from something other than (key, value) pairs");
                        }

                        SetItems(ordered, [kv[0], kv[1]]);
                    }

                    return ordered;
                }

            // How protocol 2 stores bytes: _codecs.encode(text, 'latin1').
            case ("_codecs", "encode", [string text, string encoding]):
                return encoding.ToLowerInvariant() switch
                {
                    "latin1" or "latin-1" or "iso-8859-1" when text.All(c => c <= '\u00ff') => Encoding.Latin1.GetBytes(text),
                    "utf-8" or "utf8" => Encoding.UTF8.GetBytes(text),
                    _ => new PyObject(global, arguments),
                };
            case ("builtins" or "__builtin__", "bytes" or "bytearray", []):
                return Array.Empty<byte>();
            default:
                return new PyObject(global, arguments);
        }
    }

    private void Build(object? target, object? state)
    {
        switch (target)
        {
            case PyObject obj:
                obj.State = state;
                break;
            case PyDict dict when state is PyDict attributes:
                dict.Attributes = attributes;
                break;
            case PyDict dict when state is object?[] { Length: 2 } pair && pair[0] is PyDict attributes:
                dict.Attributes = attributes;
                break;
            default:
                // Python attributes on tensors and the like carry nothing this reader uses.
                break;
        }
    }

    private void Append(object? target, List<object?> items)
    {
        switch (target)
        {
            case List<object?> list:
                list.AddRange(items);
                break;
            case PyObject obj:
                obj.ListItems.AddRange(items);
                break;
            default:
                throw Corrupt($"items are appended to {Describe(target)}, not a list");
        }
    }

    private void SetItems(object? target, List<object?> items)
    {
        if (items.Count % 2 != 0)
        {
            throw Corrupt("SETITEMS has a key without a value");
        }

        var dict = target switch
        {
            PyDict d => d,
            PyObject obj => obj.DictItems,
            _ => throw Corrupt($"items are set on {Describe(target)}, not a dict"),
        };
        for (int i = 0; i < items.Count; i += 2)
        {
            dict[items[i] ?? throw Corrupt("a dict key is None, which this reader does not support")] = items[i + 1];
        }
    }

    private byte ReadByte() => Take(1)[0];

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || count > _data.Length - _pos)
        {
            throw new CheckpointException(_path,
                $"{_record} ends unexpectedly at byte {_data.Length} (opcode at byte {_opStart} needs more); the file is truncated or corrupt");
        }

        var span = _data.AsSpan(_pos, count);
        _pos += count;
        return span;
    }

    private int ReadLength(long length) =>
        length >= 0 && length <= _data.Length - _pos
            ? (int)length
            : throw new CheckpointException(_path,
                $"{_record} ends unexpectedly: the opcode at byte {_opStart} announces {length} bytes, but only {_data.Length - _pos} follow (the file is truncated or corrupt)");

    private int ReadLength(ulong length) => ReadLength(length > long.MaxValue ? -1 : (long)length);

    private string ReadLine()
    {
        int end = Array.IndexOf(_data, (byte)'\n', _pos);
        if (end < 0)
        {
            throw new CheckpointException(_path,
                $"{_record} ends unexpectedly: the opcode at byte {_opStart} has no end of line (the file is truncated or corrupt)");
        }

        var text = DecodeText(_data.AsSpan(_pos, end - _pos));
        _pos = end + 1;
        return text;
    }

    private string DecodeText(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw Corrupt("text that is not valid UTF-8");
        }
    }

    private long DecodeLong(ReadOnlySpan<byte> bytes)
    {
        var value = new BigInteger(bytes, isUnsigned: false, isBigEndian: false);
        return value >= long.MinValue && value <= long.MaxValue
            ? (long)value
            : throw Corrupt($"the integer {value} does not fit in 64 bits");
    }

    private long ParseLong(string text) =>
        long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value)
            ? value
            : throw Corrupt($"'{text}' is not an integer that fits in 64 bits");

    private static string Describe(object? value) => value switch
    {
        null => "None",
        PyGlobal g => g.ToString(),
        PyObject o => $"an object of {o.Type}",
        PyDict => "a dict",
        List<object?> => "a list",
        object?[] => "a tuple",
        string => "a str",
        long => "an int",
        double => "a float",
        bool => "a bool",
        byte[] => "bytes",
        TorchSharp.torch.Tensor => "a tensor",
        _ => $"a {value.GetType().Name}",
    };
}
