using System.Buffers.Binary;
using System.Text;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>A Python tuple as the unpickler sees it.</summary>
internal sealed record PyTuple(object?[] Items);

/// <summary>A Python dict or OrderedDict, in insertion order (a repeated key keeps its last value, as in Python).</summary>
internal sealed class PyDict
{
    public List<KeyValuePair<object?, object?>> Items { get; } = new();
}

/// <summary>A global the unpickler allows: only names, never resolved to code.</summary>
internal sealed record PyGlobal(string Module, string Name)
{
    public override string ToString() => Module + "." + Name;
}

/// <summary>One torch storage, named by the persistent id <c>('storage', torch.FloatStorage, key, location, numel)</c>.</summary>
internal sealed record TorchStorageRef(string DTypeName, string Key, string Location, long Elements);

/// <summary>What <c>torch._utils._rebuild_tensor_v2</c> would build: a strided view of a storage.</summary>
internal sealed record TorchTensorRef(TorchStorageRef Storage, long StorageOffset, long[] Size, long[] Stride);

/// <summary>
/// A pickle reader for torch.save state dicts (protocols 2 to 5) that never runs code or creates arbitrary
/// objects. Globals are looked up in a fixed allow-list (the tensor rebuild functions, the storage classes,
/// collections.OrderedDict) and kept as names; calling one only ever produces plain records. Any other global
/// and any opcode that constructs an object (NEWOBJ, OBJ, INST, EXT) is rejected with an error naming it.
/// Every read is bounds-checked and each opcode consumes input, so hostile input ends in an error quickly.
/// Memory is capped too: a few megabytes of opcodes that each create an object (EMPTY_DICT, DUP, APPEND) would
/// otherwise take gigabytes, so the stack, the memo and the number of values created are bounded far above
/// what a state dict needs (about 25 values per tensor).
/// </summary>
internal sealed class RestrictedUnpickler
{
    internal const int MaxMemoEntries = 1 << 20;
    internal const int MaxStackDepth = 1 << 20;
    internal const int MaxValues = 1 << 21;

    private static readonly Dictionary<string, string> StorageDTypes = new(StringComparer.Ordinal)
    {
        ["FloatStorage"] = "F32", ["HalfStorage"] = "F16", ["BFloat16Storage"] = "BF16", ["CharStorage"] = "I8",
        ["DoubleStorage"] = "F64", ["LongStorage"] = "I64", ["IntStorage"] = "I32", ["ShortStorage"] = "I16",
        ["ByteStorage"] = "U8", ["BoolStorage"] = "BOOL",
        // named so that a file using them gets an "unsupported dtype" error rather than a "forbidden global" one
        ["Float8_e4m3fnStorage"] = "F8_E4M3", ["Float8_e5m2Storage"] = "F8_E5M2",
    };

    private static readonly object Mark = new();

    private readonly string _path;
    private readonly byte[] _data;
    private int _position;
    private readonly List<object?> _stack = new();
    private readonly List<int> _marks = new();
    private readonly Dictionary<long, object?> _memo = new();
    private readonly Dictionary<string, TorchStorageRef> _storages = new(StringComparer.Ordinal);
    private int _values;

    public RestrictedUnpickler(string path, byte[] data)
    {
        _path = path;
        _data = data;
    }

    /// <summary>Storages referenced by persistent ids, by key.</summary>
    public IReadOnlyDictionary<string, TorchStorageRef> Storages => _storages;

    public static bool IsAllowedGlobal(string module, string name) =>
        (module == "torch._utils" && name is "_rebuild_tensor_v2" or "_rebuild_parameter")
        || (module == "collections" && name == "OrderedDict")
        || (module == "torch" && StorageDTypes.ContainsKey(name));

    public object? Load()
    {
        while (true)
        {
            if (_position >= _data.Length) throw Fail("pickle ends without a STOP opcode (truncated?)");
            int at = _position;
            byte op = _data[_position++];
            switch (op)
            {
                case 0x80: // PROTO
                    {
                        byte version = ReadByte();
                        if (version > 5) throw Fail($"pickle protocol {version} is not supported (2 to 5 are)");
                        break;
                    }
                case 0x95: Take(8); break; // FRAME: framing is only a hint
                case (byte)'.': // STOP
                    if (_stack.Count != 1 || _marks.Count != 0) throw Fail("pickle stops with a malformed stack");
                    return _stack[0];
                case (byte)'(': CountValues(1); _marks.Add(_stack.Count); break;
                case (byte)'}': Push(new PyDict()); break;
                case (byte)']': Push(new List<object?>()); break;
                case (byte)')': Push(new PyTuple(Array.Empty<object?>())); break;
                case (byte)'t': Push(new PyTuple(PopToMark().ToArray())); break;
                case 0x85: { var a = Pop(); Push(new PyTuple(new[] { a })); break; }
                case 0x86: { var b = Pop(); var a = Pop(); Push(new PyTuple(new[] { a, b })); break; }
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new PyTuple(new[] { a, b, c })); break; }
                case (byte)'q': Memoize(ReadByte()); break;                               // BINPUT
                case (byte)'r': Memoize(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))); break; // LONG_BINPUT
                case 0x94: Memoize(_memo.Count); break;                                    // MEMOIZE
                case (byte)'h': Push(Recall(ReadByte())); break;                           // BINGET
                case (byte)'j': Push(Recall(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break; // LONG_BINGET
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break;
                case (byte)'K': Push((long)ReadByte()); break;
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break;
                case 0x8a: Push(ReadLong1()); break;
                case (byte)'N': Push(null); break;
                case 0x88: Push(true); break;
                case 0x89: Push(false); break;
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break;
                case (byte)'X': Push(ReadString(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break; // BINUNICODE
                case 0x8c: Push(ReadString(ReadByte())); break;                                          // SHORT_BINUNICODE
                case 0x8d: Push(ReadString(BinaryPrimitives.ReadUInt64LittleEndian(Take(8)))); break;    // BINUNICODE8
                case (byte)'T': Push(ReadString(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break; // BINSTRING
                case (byte)'U': Push(ReadString(ReadByte())); break;                                     // SHORT_BINSTRING
                case (byte)'B': Push(Take(CheckedLength(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))).ToArray()); break;
                case (byte)'C': Push(Take(ReadByte()).ToArray()); break;
                case (byte)'c': // GLOBAL "module\nname\n"
                    {
                        string module = ReadLine(), name = ReadLine();
                        Push(Global(module, name));
                        break;
                    }
                case 0x93: // STACK_GLOBAL
                    {
                        var name = Pop() as string ?? throw Fail("STACK_GLOBAL needs string names");
                        var module = Pop() as string ?? throw Fail("STACK_GLOBAL needs string names");
                        Push(Global(module, name));
                        break;
                    }
                case (byte)'Q': Push(PersistentLoad(Pop())); break; // BINPERSID
                case (byte)'R': // REDUCE
                    {
                        var args = Pop() as PyTuple ?? throw Fail("REDUCE arguments are not a tuple");
                        var callable = Pop();
                        Push(Call(callable, args));
                        break;
                    }
                case (byte)'b': // BUILD
                    {
                        var state = Pop();
                        var target = Peek();
                        // OrderedDict state is the state dict's _metadata attribute (module versions): not needed.
                        if (target is not PyDict || state is not (null or PyDict or PyTuple))
                            throw Fail($"BUILD on {Describe(target)} is not allowed");
                        break;
                    }
                case (byte)'s': // SETITEM
                    {
                        var value = Pop(); var key = Pop();
                        CountValues(1);
                        AsDict(Peek()).Items.Add(new(key, value));
                        break;
                    }
                case (byte)'u': // SETITEMS
                    {
                        var items = PopToMark();
                        if (items.Count % 2 != 0) throw Fail("SETITEMS with an odd number of items");
                        var dict = AsDict(Peek());
                        CountValues(items.Count / 2);
                        for (int i = 0; i < items.Count; i += 2) dict.Items.Add(new(items[i], items[i + 1]));
                        break;
                    }
                case (byte)'a': { var v = Pop(); CountValues(1); AsList(Peek()).Add(v); break; }
                case (byte)'e': { var items = PopToMark(); CountValues(items.Count); AsList(Peek()).AddRange(items); break; }
                case (byte)'0': Pop(); break;
                case (byte)'1': PopToMark(); break;
                case (byte)'2': Push(Peek()); break;
                case 0x81 or 0x92 or (byte)'o' or (byte)'i':
                    throw Fail($"opcode 0x{op:x2} at offset {at} constructs an arbitrary object; not allowed in a weights file");
                case 0x82 or 0x83 or 0x84:
                    throw Fail($"opcode 0x{op:x2} at offset {at} uses the copyreg extension registry; not allowed in a weights file");
                default:
                    throw Fail($"unsupported pickle opcode 0x{op:x2} at offset {at}");
            }
        }
    }

    private object Global(string module, string name)
    {
        if (!IsAllowedGlobal(module, name))
            throw Fail($"forbidden global '{module}.{name}': a weights file may only reference torch tensor rebuild functions, torch storage classes and collections.OrderedDict (the file may be malicious; it was not executed)");
        return new PyGlobal(module, name);
    }

    private object Call(object? callable, PyTuple args)
    {
        if (callable is not PyGlobal g) throw Fail($"REDUCE calls {Describe(callable)}, which is not an allowed function");
        var a = args.Items;
        switch (g.Module, g.Name)
        {
            case ("collections", "OrderedDict"):
                if (a.Length == 0) return new PyDict();
                throw Fail("OrderedDict called with arguments");
            case ("torch._utils", "_rebuild_tensor_v2"):
                {
                    if (a.Length is < 6 or > 7) throw Fail($"_rebuild_tensor_v2 called with {a.Length} arguments");
                    var storage = a[0] as TorchStorageRef ?? throw Fail("_rebuild_tensor_v2: first argument is not a storage");
                    long offset = a[1] is long o && o >= 0 ? o : throw Fail("_rebuild_tensor_v2: bad storage offset");
                    var size = Longs(a[2], "size");
                    var stride = Longs(a[3], "stride");
                    if (size.Length != stride.Length) throw Fail("_rebuild_tensor_v2: size and stride differ in length");
                    return new TorchTensorRef(storage, offset, size, stride);
                }
            case ("torch._utils", "_rebuild_parameter"):
                if (a.Length != 3 || a[0] is not TorchTensorRef t) throw Fail("_rebuild_parameter: malformed arguments");
                return t;
            default:
                throw Fail($"'{g}' cannot be called");
        }
    }

    private long[] Longs(object? value, string what)
    {
        if (value is not PyTuple t) throw Fail($"_rebuild_tensor_v2: {what} is not a tuple");
        var result = new long[t.Items.Length];
        for (int i = 0; i < result.Length; i++)
            result[i] = t.Items[i] is long v && v >= 0 ? v : throw Fail($"_rebuild_tensor_v2: {what} holds {Describe(t.Items[i])}");
        return result;
    }

    private TorchStorageRef PersistentLoad(object? pid)
    {
        if (pid is not PyTuple { Items.Length: 5 } t || t.Items[0] is not "storage")
            throw Fail($"persistent id {Describe(pid)} is not a torch storage reference");
        if (t.Items[1] is not PyGlobal { Module: "torch" } type || !StorageDTypes.TryGetValue(type.Name, out var dtype))
            throw Fail($"persistent id names {Describe(t.Items[1])}, not a torch storage class");
        if (t.Items[2] is not string key || key.Length == 0 || key.Contains('/') || key.Contains('\\') || key.Contains(".."))
            throw Fail($"persistent id has a bad storage key {Describe(t.Items[2])}");
        var location = t.Items[3] as string ?? throw Fail("persistent id has no location string");
        if (t.Items[4] is not long elements || elements < 0) throw Fail("persistent id has a bad element count");
        if (_storages.TryGetValue(key, out var existing))
        {
            if (existing.DTypeName != dtype || existing.Elements != elements)
                throw Fail($"storage '{key}' is referenced with two different types or sizes");
            return existing;
        }
        var storage = new TorchStorageRef(dtype, key, location, elements);
        _storages.Add(key, storage);
        return storage;
    }

    private void Memoize(long index)
    {
        if (_stack.Count == 0) throw Fail("memo store on an empty stack");
        if (_memo.Count >= MaxMemoEntries && !_memo.ContainsKey(index)) throw Fail($"pickle memo grows past {MaxMemoEntries} entries; no state dict needs that many");
        _memo[index] = _stack[^1];
    }

    private object? Recall(long index) =>
        _memo.TryGetValue(index, out var v) ? v : throw Fail($"pickle reads memo slot {index}, which was never stored");

    private long ReadLong1()
    {
        int n = ReadByte();
        if (n > 8) throw Fail($"integer of {n} bytes is too large");
        var bytes = Take(n);
        if (n == 0) return 0;
        long value = 0;
        for (int i = n - 1; i >= 0; i--) value = (value << 8) | bytes[i];
        if (n < 8 && (bytes[n - 1] & 0x80) != 0) value -= 1L << (8 * n);
        return value;
    }

    private string ReadString(ulong length)
    {
        var bytes = Take(CheckedLength(length));
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw Fail("string is not valid UTF-8");
        }
    }

    private string ReadLine()
    {
        int end = Array.IndexOf(_data, (byte)'\n', _position);
        if (end < 0 || end - _position > 1024) throw Fail("GLOBAL name is not terminated");
        string s = Encoding.ASCII.GetString(_data, _position, end - _position);
        _position = end + 1;
        return s;
    }

    private int CheckedLength(ulong length) =>
        length > (ulong)(_data.Length - _position) ? throw Fail($"a {length}-byte value runs past the end of the pickle (truncated?)") : (int)length;

    private byte ReadByte() => Take(1)[0];

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count > _data.Length - _position) throw Fail("pickle is truncated");
        var span = _data.AsSpan(_position, count);
        _position += count;
        return span;
    }

    private void Push(object? value)
    {
        if (_stack.Count >= MaxStackDepth) throw Fail($"pickle stack grows past {MaxStackDepth} values; no state dict needs that many");
        CountValues(1);
        _stack.Add(value);
    }

    private void CountValues(int count)
    {
        _values += count;
        if (_values > MaxValues) throw Fail($"pickle creates more than {MaxValues} values; no state dict needs that many");
    }

    private object? Pop()
    {
        if (_stack.Count == 0 || (_marks.Count > 0 && _stack.Count == _marks[^1])) throw Fail("pickle stack underflow");
        var v = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return v;
    }

    private object? Peek() =>
        _stack.Count == 0 || (_marks.Count > 0 && _stack.Count == _marks[^1]) ? throw Fail("pickle stack underflow") : _stack[^1];

    private List<object?> PopToMark()
    {
        if (_marks.Count == 0) throw Fail("pickle has no MARK to pop to");
        int mark = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        var items = _stack.GetRange(mark, _stack.Count - mark);
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private PyDict AsDict(object? o) => o as PyDict ?? throw Fail($"SETITEM on {Describe(o)}, not a dict");
    private List<object?> AsList(object? o) => o as List<object?> ?? throw Fail($"APPEND on {Describe(o)}, not a list");

    internal static string Describe(object? o) => o switch
    {
        null => "None",
        string s => "'" + (s.Length > 60 ? s[..60] + "..." : s) + "'",
        long l => l.ToString(System.Globalization.CultureInfo.InvariantCulture),
        PyGlobal g => g.ToString(),
        PyTuple => "a tuple",
        PyDict => "a dict",
        List<object?> => "a list",
        TorchStorageRef => "a storage",
        TorchTensorRef => "a tensor",
        _ => "a " + o.GetType().Name,
    };

    private CheckpointException Fail(string problem) => new(_path, problem);
}
