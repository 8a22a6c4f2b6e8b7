namespace MoeCompiler.Cuda;

/// <summary>
/// Public spec-sheet limits of the GPUs this project targets, by device name (what `moe bench --device cuda` and
/// the device benchmark compare against). NaN when the device is not in the table.
/// </summary>
public static class DevicePeaks
{
    /// <summary>HBM bandwidth in GB/s (10⁹ bytes per second).</summary>
    public static double HbmGBps(string device) =>
        Has(device, "H200") ? 4800
        : Has(device, "H100") && Has(device, "PCIe") ? 2000
        : Has(device, "H100") ? 3350
        : Has(device, "A100") ? 2039
        : double.NaN;

    /// <summary>Dense (no sparsity) bf16 tensor-core peak in TFLOPS.</summary>
    public static double Bf16Tflops(string device) =>
        Has(device, "H100") && Has(device, "PCIe") ? 756
        : Has(device, "H100") || Has(device, "H200") ? 989
        : Has(device, "A100") ? 312
        : double.NaN;

    private static bool Has(string device, string part) => device.Contains(part, StringComparison.OrdinalIgnoreCase);
}
