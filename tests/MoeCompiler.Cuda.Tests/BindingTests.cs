using MoeCompiler.Cuda.Native;
using Xunit.Abstractions;

namespace MoeCompiler.Cuda.Tests;

public sealed class BindingTests(ITestOutputHelper output)
{
    [CudaFact]
    public void DriverCublasAndNvrtcLoadAndTheDeviceIsUsable()
    {
        Assert.True(CudaProbe.TryFindDevice(out string description), description);
        output.WriteLine(description);
        output.WriteLine($"driver {CudaDriver.Shared.LibraryPath}, cuBLAS {Cublas.Shared.LibraryPath}, NVRTC {Nvrtc.Shared.Version} {Nvrtc.Shared.LibraryPath}");
        Assert.True(CudaBackend.TryCreate(out var backend, out string reason), reason);
        using (backend)
        {
            Assert.True(backend!.ComputeCapability >= 50);
            output.WriteLine($"{backend.Name}: kernels for {backend.KernelArchitecture} ({(backend.KernelsAreCubin ? "CUBIN" : "PTX")})");
        }
    }

    [Fact]
    public void WithoutADeviceTheBackendIsNotCreatedAndSaysWhy()
    {
        bool available = CudaProbe.TryFindDevice(out string description);
        output.WriteLine(available ? "CUDA device: " + description : description);
        Assert.False(string.IsNullOrWhiteSpace(description));
        if (available) return; // covered by the [CudaFact] above
        Assert.StartsWith("no CUDA device", description);
        Assert.False(CudaBackend.TryCreate(out var backend, out string reason));
        Assert.Null(backend);
        Assert.False(string.IsNullOrWhiteSpace(reason));
        output.WriteLine("TryCreate: " + reason);
    }

    [Fact]
    public void AMissingLibraryListsEveryCandidateTried()
    {
        var e = Assert.Throws<CudaUnavailableException>(() =>
            CudaLibraryLocator.Load("a test library", ["libmoe-definitely-missing.so.99"]));
        Assert.Contains("libmoe-definitely-missing.so.99", e.Tried);
        Assert.Contains("a test library could not be loaded", e.Message);
        Assert.Contains(CudaLibraryLocator.LibraryDirsVariable, e.Message);
        Assert.Contains("tried libmoe-definitely-missing.so.99", e.Message);
    }
}
