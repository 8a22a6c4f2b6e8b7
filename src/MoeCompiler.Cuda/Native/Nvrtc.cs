using System.Runtime.InteropServices;
using System.Text;
using static MoeCompiler.Cuda.Native.CudaLibraryLocator;

namespace MoeCompiler.Cuda.Native;

/// <summary>NVRTC (runtime compilation of CUDA C to PTX or CUBIN), bound by symbol lookup.</summary>
public sealed unsafe class Nvrtc
{
    private static readonly Lazy<Nvrtc> Instance = new(() => new Nvrtc(Load("NVRTC (libnvrtc)", CudaLibraryNames.Nvrtc)));
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, Lazy<Nvrtc>> ForMajor = new();

    /// <summary>The first NVRTC (libnvrtc) found, whatever its version.</summary>
    public static Nvrtc Shared => Instance.Value;

    /// <summary>The newest NVRTC (libnvrtc) whose CUDA major version does not exceed the driver's (<paramref name="driverMajorVersion"/>).</summary>
    public static Nvrtc ForDriver(int driverMajorVersion) =>
        ForMajor.GetOrAdd(driverMajorVersion, major => new Lazy<Nvrtc>(() => new Nvrtc(Load("NVRTC (libnvrtc)", CudaLibraryNames.Nvrtc, major)))).Value;

    /// <summary>Binds a specific library file (tests pin Debian's libnvrtc.so.11.2 this way).</summary>
    public static Nvrtc FromPath(string path)
    {
        if (!NativeLibrary.TryLoad(path, out nint handle))
            throw new CudaUnavailableException($"NVRTC could not be loaded from {path}", [path]);
        return new Nvrtc(new LoadedLibrary(handle, path));
    }

    private readonly delegate* unmanaged<int*, int*, int> _version;
    private readonly delegate* unmanaged<int, byte*> _getErrorString;
    private readonly delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int> _createProgram;
    private readonly delegate* unmanaged<nint*, int> _destroyProgram;
    private readonly delegate* unmanaged<nint, int, byte**, int> _compileProgram;
    private readonly delegate* unmanaged<nint, nuint*, int> _getPtxSize;
    private readonly delegate* unmanaged<nint, byte*, int> _getPtx;
    private readonly delegate* unmanaged<nint, nuint*, int> _getCubinSize;
    private readonly delegate* unmanaged<nint, byte*, int> _getCubin;
    private readonly delegate* unmanaged<nint, nuint*, int> _getLogSize;
    private readonly delegate* unmanaged<nint, byte*, int> _getLog;
    private readonly delegate* unmanaged<int*, int> _getNumSupportedArchs;
    private readonly delegate* unmanaged<int*, int> _getSupportedArchs;

    private Nvrtc(LoadedLibrary library)
    {
        LibraryPath = library.Path;
        _version = (delegate* unmanaged<int*, int*, int>)Export(library, "nvrtcVersion");
        _getErrorString = (delegate* unmanaged<int, byte*>)Export(library, "nvrtcGetErrorString");
        _createProgram = (delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int>)Export(library, "nvrtcCreateProgram");
        _destroyProgram = (delegate* unmanaged<nint*, int>)Export(library, "nvrtcDestroyProgram");
        _compileProgram = (delegate* unmanaged<nint, int, byte**, int>)Export(library, "nvrtcCompileProgram");
        _getPtxSize = (delegate* unmanaged<nint, nuint*, int>)Export(library, "nvrtcGetPTXSize");
        _getPtx = (delegate* unmanaged<nint, byte*, int>)Export(library, "nvrtcGetPTX");
        _getCubinSize = (delegate* unmanaged<nint, nuint*, int>)OptionalExport(library, "nvrtcGetCUBINSize");
        _getCubin = (delegate* unmanaged<nint, byte*, int>)OptionalExport(library, "nvrtcGetCUBIN");
        _getLogSize = (delegate* unmanaged<nint, nuint*, int>)Export(library, "nvrtcGetProgramLogSize");
        _getLog = (delegate* unmanaged<nint, byte*, int>)Export(library, "nvrtcGetProgramLog");
        _getNumSupportedArchs = (delegate* unmanaged<int*, int>)OptionalExport(library, "nvrtcGetNumSupportedArchs");
        _getSupportedArchs = (delegate* unmanaged<int*, int>)OptionalExport(library, "nvrtcGetSupportedArchs");
        int major, minor;
        Check(_version(&major, &minor), "nvrtcVersion");
        Version = new Version(major, minor);
    }

    public string LibraryPath { get; }
    public Version Version { get; }
    public bool CanEmitCubin => _getCubin != null && _getCubinSize != null;

    /// <summary>Compute capabilities this NVRTC can target (e.g. 52..90), or empty when it cannot tell (before 11.2).</summary>
    public IReadOnlyList<int> SupportedArchitectures()
    {
        if (_getNumSupportedArchs == null || _getSupportedArchs == null) return Array.Empty<int>();
        int count;
        Check(_getNumSupportedArchs(&count), "nvrtcGetNumSupportedArchs");
        var archs = new int[count];
        fixed (int* p = archs) Check(_getSupportedArchs(p), "nvrtcGetSupportedArchs");
        return archs;
    }

    /// <summary>The result of a compilation: the image (PTX text with a NUL, or CUBIN bytes) and the log.</summary>
    public sealed record Output(byte[] Image, bool IsCubin, string Log);

    /// <summary>
    /// Compiles one translation unit. <paramref name="options"/> are NVRTC flags such as
    /// <c>--gpu-architecture=compute_80</c> (PTX) or <c>--gpu-architecture=sm_90</c> (CUBIN when
    /// <paramref name="cubin"/>). A compile error throws <see cref="KernelCompilationException"/> with the log.
    /// </summary>
    public Output Compile(string source, string name, IReadOnlyList<string> options, bool cubin = false)
    {
        if (cubin && !CanEmitCubin) throw new InvalidOperationException($"{LibraryPath} cannot emit CUBIN");
        nint program;
        byte[] sourceBytes = Utf8Z(source), nameBytes = Utf8Z(name);
        fixed (byte* s = sourceBytes)
        fixed (byte* n = nameBytes)
            Check(_createProgram(&program, s, n, 0, null, null), "nvrtcCreateProgram");
        try
        {
            var optionBytes = options.Select(Utf8Z).ToArray();
            var handles = optionBytes.Select(b => GCHandle.Alloc(b, GCHandleType.Pinned)).ToArray();
            int result;
            try
            {
                byte** pointers = stackalloc byte*[Math.Max(1, optionBytes.Length)];
                for (int i = 0; i < handles.Length; i++) pointers[i] = (byte*)handles[i].AddrOfPinnedObject();
                result = _compileProgram(program, optionBytes.Length, pointers);
            }
            finally
            {
                foreach (var h in handles) h.Free();
            }
            string log = ProgramLog(program);
            if (result != 0)
                throw new KernelCompilationException(name, options, $"{ErrorString(result)} (code {result})", log);
            nuint size;
            byte[] image;
            if (cubin)
            {
                Check(_getCubinSize(program, &size), "nvrtcGetCUBINSize");
                image = new byte[(int)size];
                fixed (byte* p = image) Check(_getCubin(program, p), "nvrtcGetCUBIN");
            }
            else
            {
                Check(_getPtxSize(program, &size), "nvrtcGetPTXSize");
                image = new byte[(int)size];
                fixed (byte* p = image) Check(_getPtx(program, p), "nvrtcGetPTX");
            }
            return new Output(image, cubin, log);
        }
        finally
        {
            _destroyProgram(&program);
        }
    }

    private string ProgramLog(nint program)
    {
        nuint size;
        if (_getLogSize(program, &size) != 0 || size <= 1) return "";
        var buffer = new byte[(int)size];
        fixed (byte* p = buffer)
        {
            if (_getLog(program, p) != 0) return "";
        }
        return Encoding.UTF8.GetString(buffer, 0, buffer.Length - 1).Trim();
    }

    private string ErrorString(int result) => Marshal.PtrToStringUTF8((nint)_getErrorString(result)) ?? "NVRTC error";

    private void Check(int result, string call)
    {
        if (result != 0) throw new CudaException(call, result, ErrorString(result));
    }

    private static byte[] Utf8Z(string s)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
        Encoding.UTF8.GetBytes(s, 0, s.Length, bytes, 0);
        return bytes;
    }
}

/// <summary>A kernel source did not compile; the message carries NVRTC's log.</summary>
public sealed class KernelCompilationException : Exception
{
    public KernelCompilationException(string sourceName, IReadOnlyList<string> options, string error, string log)
        : base($"NVRTC could not compile {sourceName} with [{string.Join(" ", options)}]: {error}\n{log}")
    {
        SourceName = sourceName;
        Log = log;
    }

    public string SourceName { get; }
    public string Log { get; }
}
