using System.Runtime.InteropServices;
using static MoeCompiler.Cuda.Native.CudaLibraryLocator;

namespace MoeCompiler.Cuda.Native;

/// <summary>
/// The subset of the CUDA driver API (<c>libcuda.so.1</c>) the backend uses, bound by symbol lookup so that no
/// toolkit or NuGet package is needed. Handles (contexts, streams, modules, graphs) and device pointers are
/// plain <see cref="nint"/>s. Loaded once per process by <see cref="Load"/>.
/// </summary>
public sealed unsafe class CudaDriver
{
    public const int AttributeMultiprocessorCount = 16;
    public const int AttributeComputeCapabilityMajor = 75;
    public const int AttributeComputeCapabilityMinor = 76;
    public const int AttributeMaxSharedMemoryPerBlockOptin = 97;
    public const int FunctionAttributeMaxDynamicSharedSizeBytes = 8;
    public const int StreamNonBlocking = 1;
    public const int CaptureModeRelaxed = 2;
    public const int ErrorNoDevice = 100;
    public const int ErrorStreamCaptureUnsupported = 900;

    private static readonly Lazy<CudaDriver> Instance = new(() => new CudaDriver(Load("the CUDA driver (libcuda)", CudaLibraryNames.Driver)));

    /// <summary>The process-wide driver binding; throws <see cref="CudaUnavailableException"/> when libcuda is missing.</summary>
    public static CudaDriver Shared => Instance.Value;

    public string LibraryPath { get; }

    internal readonly delegate* unmanaged<uint, int> cuInit;
    internal readonly delegate* unmanaged<int*, int> cuDriverGetVersion;
    internal readonly delegate* unmanaged<int*, int> cuDeviceGetCount;
    internal readonly delegate* unmanaged<int*, int, int> cuDeviceGet;
    internal readonly delegate* unmanaged<byte*, int, int, int> cuDeviceGetName;
    internal readonly delegate* unmanaged<int*, int, int, int> cuDeviceGetAttribute;
    internal readonly delegate* unmanaged<nuint*, int, int> cuDeviceTotalMem;
    internal readonly delegate* unmanaged<nint*, int, int> cuDevicePrimaryCtxRetain;
    internal readonly delegate* unmanaged<int, int> cuDevicePrimaryCtxRelease;
    internal readonly delegate* unmanaged<nint, int> cuCtxSetCurrent;
    internal readonly delegate* unmanaged<int> cuCtxSynchronize;
    internal readonly delegate* unmanaged<nint*, nuint, int> cuMemAlloc;
    internal readonly delegate* unmanaged<nint, int> cuMemFree;
    internal readonly delegate* unmanaged<void**, nuint, int> cuMemAllocHost;
    internal readonly delegate* unmanaged<void*, int> cuMemFreeHost;
    internal readonly delegate* unmanaged<nuint*, nuint*, int> cuMemGetInfo;
    internal readonly delegate* unmanaged<nint, void*, nuint, int> cuMemcpyHtoD;
    internal readonly delegate* unmanaged<void*, nint, nuint, int> cuMemcpyDtoH;
    internal readonly delegate* unmanaged<nint, void*, nuint, nint, int> cuMemcpyHtoDAsync;
    internal readonly delegate* unmanaged<void*, nint, nuint, nint, int> cuMemcpyDtoHAsync;
    internal readonly delegate* unmanaged<nint, nint, nuint, nint, int> cuMemcpyDtoDAsync;
    internal readonly delegate* unmanaged<nint, uint, nuint, nint, int> cuMemsetD32Async;
    internal readonly delegate* unmanaged<nint*, uint, int> cuStreamCreate;
    internal readonly delegate* unmanaged<nint, int> cuStreamDestroy;
    internal readonly delegate* unmanaged<nint, int> cuStreamSynchronize;
    internal readonly delegate* unmanaged<nint*, void*, int> cuModuleLoadData;
    internal readonly delegate* unmanaged<nint, int> cuModuleUnload;
    internal readonly delegate* unmanaged<nint*, nint, byte*, int> cuModuleGetFunction;
    internal readonly delegate* unmanaged<nint, int, int, int> cuFuncSetAttribute;
    internal readonly delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int> cuLaunchKernel;
    internal readonly delegate* unmanaged<nint, int, int> cuStreamBeginCapture;
    internal readonly delegate* unmanaged<nint, nint*, int> cuStreamEndCapture;
    internal readonly delegate* unmanaged<nint, int*, int> cuStreamIsCapturing;
    internal readonly delegate* unmanaged<nint*, nint, ulong, int> cuGraphInstantiateWithFlags;
    /// <summary>CUDA 12's cuGraphExecUpdate_v2; null on older drivers (then graphs are re-instantiated).</summary>
    internal readonly delegate* unmanaged<nint, nint, GraphExecUpdateResultInfo*, int> cuGraphExecUpdate;
    internal readonly delegate* unmanaged<nint, nint, int> cuGraphLaunch;
    internal readonly delegate* unmanaged<nint, int> cuGraphExecDestroy;
    internal readonly delegate* unmanaged<nint, int> cuGraphDestroy;
    internal readonly delegate* unmanaged<int, byte**, int> cuGetErrorName;
    internal readonly delegate* unmanaged<int, byte**, int> cuGetErrorString;

    [StructLayout(LayoutKind.Sequential)]
    internal struct GraphExecUpdateResultInfo
    {
        public int Result;
        public nint ErrorNode;
        public nint ErrorFromNode;
    }

    private CudaDriver(LoadedLibrary library)
    {
        LibraryPath = library.Path;
        cuInit = (delegate* unmanaged<uint, int>)Export(library, "cuInit");
        cuDriverGetVersion = (delegate* unmanaged<int*, int>)Export(library, "cuDriverGetVersion");
        cuDeviceGetCount = (delegate* unmanaged<int*, int>)Export(library, "cuDeviceGetCount");
        cuDeviceGet = (delegate* unmanaged<int*, int, int>)Export(library, "cuDeviceGet");
        cuDeviceGetName = (delegate* unmanaged<byte*, int, int, int>)Export(library, "cuDeviceGetName");
        cuDeviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)Export(library, "cuDeviceGetAttribute");
        cuDeviceTotalMem = (delegate* unmanaged<nuint*, int, int>)Export(library, "cuDeviceTotalMem_v2");
        cuDevicePrimaryCtxRetain = (delegate* unmanaged<nint*, int, int>)Export(library, "cuDevicePrimaryCtxRetain");
        cuDevicePrimaryCtxRelease = (delegate* unmanaged<int, int>)Export(library, "cuDevicePrimaryCtxRelease_v2");
        cuCtxSetCurrent = (delegate* unmanaged<nint, int>)Export(library, "cuCtxSetCurrent");
        cuCtxSynchronize = (delegate* unmanaged<int>)Export(library, "cuCtxSynchronize");
        cuMemAlloc = (delegate* unmanaged<nint*, nuint, int>)Export(library, "cuMemAlloc_v2");
        cuMemFree = (delegate* unmanaged<nint, int>)Export(library, "cuMemFree_v2");
        cuMemAllocHost = (delegate* unmanaged<void**, nuint, int>)Export(library, "cuMemAllocHost_v2");
        cuMemFreeHost = (delegate* unmanaged<void*, int>)Export(library, "cuMemFreeHost");
        cuMemGetInfo = (delegate* unmanaged<nuint*, nuint*, int>)Export(library, "cuMemGetInfo_v2");
        cuMemcpyHtoD = (delegate* unmanaged<nint, void*, nuint, int>)Export(library, "cuMemcpyHtoD_v2");
        cuMemcpyDtoH = (delegate* unmanaged<void*, nint, nuint, int>)Export(library, "cuMemcpyDtoH_v2");
        cuMemcpyHtoDAsync = (delegate* unmanaged<nint, void*, nuint, nint, int>)Export(library, "cuMemcpyHtoDAsync_v2");
        cuMemcpyDtoHAsync = (delegate* unmanaged<void*, nint, nuint, nint, int>)Export(library, "cuMemcpyDtoHAsync_v2");
        cuMemcpyDtoDAsync = (delegate* unmanaged<nint, nint, nuint, nint, int>)Export(library, "cuMemcpyDtoDAsync_v2");
        cuMemsetD32Async = (delegate* unmanaged<nint, uint, nuint, nint, int>)Export(library, "cuMemsetD32Async");
        cuStreamCreate = (delegate* unmanaged<nint*, uint, int>)Export(library, "cuStreamCreate");
        cuStreamDestroy = (delegate* unmanaged<nint, int>)Export(library, "cuStreamDestroy_v2");
        cuStreamSynchronize = (delegate* unmanaged<nint, int>)Export(library, "cuStreamSynchronize");
        cuModuleLoadData = (delegate* unmanaged<nint*, void*, int>)Export(library, "cuModuleLoadData");
        cuModuleUnload = (delegate* unmanaged<nint, int>)Export(library, "cuModuleUnload");
        cuModuleGetFunction = (delegate* unmanaged<nint*, nint, byte*, int>)Export(library, "cuModuleGetFunction");
        cuFuncSetAttribute = (delegate* unmanaged<nint, int, int, int>)Export(library, "cuFuncSetAttribute");
        cuLaunchKernel = (delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int>)Export(library, "cuLaunchKernel");
        cuStreamBeginCapture = (delegate* unmanaged<nint, int, int>)Export(library, "cuStreamBeginCapture_v2");
        cuStreamEndCapture = (delegate* unmanaged<nint, nint*, int>)Export(library, "cuStreamEndCapture");
        cuStreamIsCapturing = (delegate* unmanaged<nint, int*, int>)Export(library, "cuStreamIsCapturing");
        cuGraphInstantiateWithFlags = (delegate* unmanaged<nint*, nint, ulong, int>)Export(library, "cuGraphInstantiateWithFlags");
        cuGraphExecUpdate = (delegate* unmanaged<nint, nint, GraphExecUpdateResultInfo*, int>)OptionalExport(library, "cuGraphExecUpdate_v2");
        cuGraphLaunch = (delegate* unmanaged<nint, nint, int>)Export(library, "cuGraphLaunch");
        cuGraphExecDestroy = (delegate* unmanaged<nint, int>)Export(library, "cuGraphExecDestroy");
        cuGraphDestroy = (delegate* unmanaged<nint, int>)Export(library, "cuGraphDestroy");
        cuGetErrorName = (delegate* unmanaged<int, byte**, int>)Export(library, "cuGetErrorName");
        cuGetErrorString = (delegate* unmanaged<int, byte**, int>)Export(library, "cuGetErrorString");
    }

    /// <summary>"CUDA_ERROR_OUT_OF_MEMORY: out of memory" for a result code.</summary>
    public string Describe(int result)
    {
        byte* name = null, text = null;
        cuGetErrorName(result, &name);
        cuGetErrorString(result, &text);
        string n = name is null ? "CUDA_ERROR_" + result.ToString(System.Globalization.CultureInfo.InvariantCulture) : Marshal.PtrToStringUTF8((nint)name)!;
        return text is null ? n : n + ": " + Marshal.PtrToStringUTF8((nint)text);
    }

    /// <summary>Throws a <see cref="CudaException"/> naming the call when <paramref name="result"/> is not success.</summary>
    public void Check(int result, string call)
    {
        if (result != 0) throw new CudaException(call, result, Describe(result));
    }

    public int DriverVersion
    {
        get
        {
            int v;
            Check(cuDriverGetVersion(&v), "cuDriverGetVersion");
            return v;
        }
    }

    /// <summary>cuInit and the device count; a driver without a usable GPU reports zero rather than throwing.</summary>
    public int InitializeAndCountDevices()
    {
        int r = cuInit(0);
        if (r == ErrorNoDevice) return 0;
        Check(r, "cuInit");
        int count;
        Check(cuDeviceGetCount(&count), "cuDeviceGetCount");
        return count;
    }

    public int Attribute(int device, int attribute)
    {
        int value;
        Check(cuDeviceGetAttribute(&value, attribute, device), "cuDeviceGetAttribute");
        return value;
    }

    public string DeviceName(int device)
    {
        byte* buffer = stackalloc byte[256];
        Check(cuDeviceGetName(buffer, 256, device), "cuDeviceGetName");
        return Marshal.PtrToStringUTF8((nint)buffer) ?? "?";
    }

    public long TotalMemory(int device)
    {
        nuint bytes;
        Check(cuDeviceTotalMem(&bytes, device), "cuDeviceTotalMem");
        return (long)bytes;
    }
}
