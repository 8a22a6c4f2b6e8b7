using MoeCompiler.Cuda.Native;
using Xunit.Abstractions;

namespace MoeCompiler.Cuda.Tests;

/// <summary>Every embedded .cu source compiles to PTX, so a syntax or type error in a kernel fails the build's tests.</summary>
public sealed class KernelCompileTests(ITestOutputHelper output)
{
    /// <summary>NVRTC 11.2's ceiling is sm_86/compute_80-class; the check targets compute_80 (A100) PTX.</summary>
    public const string CheckArchitecture = "compute_80";

    [Fact]
    public void EverySourceFileIsEmbedded()
    {
        string[] expected = ["attention.cu", "elementwise.cu", "gather.cu", "gemv.cu", "moe.cu", "norms.cu", "rotary.cu", "softmax.cu", "vision.cu"];
        Assert.Equal(expected, KernelSources.Names);
    }

    [NvrtcFact]
    public void EveryKernelSourceCompilesToPtx()
    {
        Nvrtc nvrtc = NvrtcLocator.Nvrtc ?? throw new InvalidOperationException("CI=true but " + NvrtcLocator.Report);
        output.WriteLine(NvrtcLocator.Report);
        var failures = new List<string>();
        foreach (string name in KernelSources.Names)
        {
            try
            {
                var result = nvrtc.Compile(KernelSources.Load(name), name, CudaKernels.CompileOptions(CheckArchitecture));
                string ptx = System.Text.Encoding.ASCII.GetString(result.Image).TrimEnd('\0');
                Assert.Contains(".target sm_80", ptx);
                foreach (string kernel in CudaKernels.KernelNamesIn(name))
                    Assert.True(ptx.Contains(".entry " + kernel + "(", StringComparison.Ordinal), $"{name}: PTX has no entry {kernel}");
                output.WriteLine($"{name}: {ptx.Length} chars of PTX{(result.Log.Length > 0 ? ", log: " + result.Log : "")}");
            }
            catch (KernelCompilationException e)
            {
                failures.Add(e.Message);
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
    }

    /// <summary>Also for the newest architecture this NVRTC knows (compute_90 with NVRTC 11.8), as CUBIN when it can.</summary>
    [NvrtcFact]
    public void EveryKernelSourceCompilesForTheNewestSupportedArchitecture()
    {
        Nvrtc nvrtc = NvrtcLocator.Nvrtc ?? throw new InvalidOperationException("CI=true but " + NvrtcLocator.Report);
        var supported = nvrtc.SupportedArchitectures();
        int newest = supported.Count > 0 ? supported.Max() : 80;
        var (architecture, cubin) = ArchitectureSelection.Choose(newest, supported, nvrtc.CanEmitCubin);
        output.WriteLine($"{NvrtcLocator.Report}: {architecture} ({(cubin ? "CUBIN" : "PTX")}); supports {string.Join(", ", supported)}");
        foreach (string name in KernelSources.Names)
        {
            var result = nvrtc.Compile(KernelSources.Load(name), name, CudaKernels.CompileOptions(architecture), cubin);
            Assert.True(result.Image.Length > 1000, $"{name}: {result.Image.Length} bytes");
            if (cubin) Assert.Equal([0x7f, (byte)'E', (byte)'L', (byte)'F'], result.Image.Take(4));
        }
    }

    [NvrtcFact]
    public void ASyntaxErrorIsReportedWithTheLog()
    {
        Nvrtc nvrtc = NvrtcLocator.Nvrtc ?? throw new InvalidOperationException("CI=true but " + NvrtcLocator.Report);
        var e = Assert.Throws<KernelCompilationException>(() =>
            nvrtc.Compile("extern \"C\" __global__ void broken(float* x) { x[0] = ; }", "broken.cu", CudaKernels.CompileOptions(CheckArchitecture)));
        Assert.Contains("broken.cu", e.Message);
        Assert.Contains("expected an expression", e.Log);
    }
}
