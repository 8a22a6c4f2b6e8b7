using MoeCompiler.Cuda.Native;

namespace MoeCompiler.Cuda;

/// <summary>Whether this process can use a CUDA device, and why not; computed once.</summary>
public static class CudaProbe
{
    private static readonly Lazy<(bool Available, string Description)> Result = new(Probe);

    /// <summary>True with a one-line device description, or false with the reason (missing driver, no device).</summary>
    public static bool TryFindDevice(out string description)
    {
        description = Result.Value.Description;
        return Result.Value.Available;
    }

    private static (bool, string) Probe()
    {
        try
        {
            var driver = CudaDriver.Shared;
            int count = driver.InitializeAndCountDevices();
            if (count == 0) return (false, $"no CUDA device (driver {driver.LibraryPath} loaded, but it reports no GPU)");
            int major = driver.Attribute(0, CudaDriver.AttributeComputeCapabilityMajor);
            int minor = driver.Attribute(0, CudaDriver.AttributeComputeCapabilityMinor);
            int version = driver.DriverVersion;
            return (true, string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{driver.DeviceName(0)} (sm_{major}{minor}, {driver.TotalMemory(0) / (1L << 30)} GiB, driver API {version / 1000}.{version % 1000 / 10}, {count} device(s))"));
        }
        catch (CudaUnavailableException e)
        {
            return (false, "no CUDA device: " + e.Message.Split('\n')[0]);
        }
        catch (CudaException e)
        {
            return (false, "no CUDA device: " + e.Message);
        }
    }
}

/// <summary>Picks what NVRTC should target for a device, given what that NVRTC supports.</summary>
public static class ArchitectureSelection
{
    /// <summary>
    /// CUBIN for the exact <c>sm_XX</c> when NVRTC supports it and can emit CUBIN; otherwise PTX for the newest
    /// supported <c>compute_XX</c> not above the device (the driver JIT-compiles PTX forward). An NVRTC that cannot
    /// list its architectures (before 11.2) gets the device's own compute capability as PTX.
    /// </summary>
    public static (string Architecture, bool Cubin) Choose(int computeCapability, IReadOnlyList<int> supported, bool canEmitCubin)
    {
        string cc = computeCapability.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (supported.Count == 0) return ("compute_" + cc, false);
        if (supported.Contains(computeCapability)) return canEmitCubin ? ("sm_" + cc, true) : ("compute_" + cc, false);
        var lower = supported.Where(a => a <= computeCapability).ToArray();
        if (lower.Length == 0)
            throw new CudaUnavailableException(
                $"this NVRTC supports compute capabilities {string.Join(", ", supported)}, none of which runs on a sm_{cc} device");
        return ("compute_" + lower.Max().ToString(System.Globalization.CultureInfo.InvariantCulture), false);
    }
}
