using System.Runtime.InteropServices;
using static MoeCompiler.Cuda.Native.CudaLibraryLocator;

namespace MoeCompiler.Cuda.Native;

/// <summary>cuBLAS (v2 API) by symbol lookup: GEMMs with bf16/f16/f32 inputs and f32 accumulation.</summary>
public sealed unsafe class Cublas
{
    public const int OpN = 0;
    public const int OpT = 1;
    public const int DataTypeF32 = 0;   // CUDA_R_32F
    public const int DataTypeF16 = 2;   // CUDA_R_16F
    public const int DataTypeBF16 = 14; // CUDA_R_16BF
    public const int ComputeF32 = 68;   // CUBLAS_COMPUTE_32F
    public const int GemmDefault = -1;
    public const int DefaultMath = 0;
    /// <summary>CUBLAS_TF32_TENSOR_OP_MATH | 0: allow TF32 for f32 GEMMs (used only on request).</summary>
    public const int Tf32TensorOpMath = 3;

    private static readonly Lazy<Cublas> Instance = new(() => new Cublas(Load("cuBLAS (libcublas)", CudaLibraryNames.Cublas)));
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, Lazy<Cublas>> ForMajor = new();

    /// <summary>The first cuBLAS (libcublas) found, whatever its version.</summary>
    public static Cublas Shared => Instance.Value;

    /// <summary>The newest cuBLAS (libcublas) whose CUDA major version does not exceed the driver's (<paramref name="driverMajorVersion"/>).</summary>
    public static Cublas ForDriver(int driverMajorVersion) =>
        ForMajor.GetOrAdd(driverMajorVersion, major => new Lazy<Cublas>(() => new Cublas(Load("cuBLAS (libcublas)", CudaLibraryNames.Cublas, major)))).Value;

    public string LibraryPath { get; }

    internal readonly delegate* unmanaged<nint*, int> cublasCreate;
    internal readonly delegate* unmanaged<nint, int> cublasDestroy;
    internal readonly delegate* unmanaged<nint, nint, int> cublasSetStream;
    internal readonly delegate* unmanaged<nint, int, int> cublasSetMathMode;
    /// <summary>Null before cuBLAS 11; a fixed workspace keeps cuBLAS from allocating during graph capture.</summary>
    internal readonly delegate* unmanaged<nint, nint, nuint, int> cublasSetWorkspace;
    internal readonly delegate* unmanaged<nint, int, int, int, int, int, void*, nint, int, int, nint, int, int, void*, nint, int, int, int, int, int> cublasGemmEx;
    internal readonly delegate* unmanaged<nint, int, int, int, int, int, void*, nint, int, int, long, nint, int, int, long, void*, nint, int, int, long, int, int, int, int> cublasGemmStridedBatchedEx;
    private readonly delegate* unmanaged<int, byte*> _getStatusString;

    private Cublas(LoadedLibrary library)
    {
        LibraryPath = library.Path;
        cublasCreate = (delegate* unmanaged<nint*, int>)Export(library, "cublasCreate_v2");
        cublasDestroy = (delegate* unmanaged<nint, int>)Export(library, "cublasDestroy_v2");
        cublasSetStream = (delegate* unmanaged<nint, nint, int>)Export(library, "cublasSetStream_v2");
        cublasSetMathMode = (delegate* unmanaged<nint, int, int>)Export(library, "cublasSetMathMode");
        cublasSetWorkspace = (delegate* unmanaged<nint, nint, nuint, int>)OptionalExport(library, "cublasSetWorkspace_v2");
        cublasGemmEx = (delegate* unmanaged<nint, int, int, int, int, int, void*, nint, int, int, nint, int, int, void*, nint, int, int, int, int, int>)Export(library, "cublasGemmEx");
        cublasGemmStridedBatchedEx = (delegate* unmanaged<nint, int, int, int, int, int, void*, nint, int, int, long, nint, int, int, long, void*, nint, int, int, long, int, int, int, int>)Export(library, "cublasGemmStridedBatchedEx");
        _getStatusString = (delegate* unmanaged<int, byte*>)OptionalExport(library, "cublasGetStatusString");
    }

    public void Check(int status, string call)
    {
        if (status == 0) return;
        string text = _getStatusString != null ? Marshal.PtrToStringUTF8((nint)_getStatusString(status)) ?? "" : "";
        throw new CudaException(call, status, text.Length > 0 ? text : "cuBLAS status " + status.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }
}
