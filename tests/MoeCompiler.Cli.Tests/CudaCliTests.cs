using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MoeCompiler.Cuda;

namespace MoeCompiler.Cli.Tests;

/// <summary>
/// Without a CUDA driver, points this test process at the CPU emulation of the driver and cuBLAS
/// (scripts/gpu/emulator, built by scripts/gpu/emulator/build.sh into .device-carry/emulator) so that
/// <see cref="CudaCliTests"/> run when MOE_CUDA_EMULATOR_TESTS=1 (not in the default test run: too slow). A real driver, or MOE_CUDA_LIB_DIRS set by the caller, wins. Runs before any test (and
/// before <see cref="CudaProbe"/> caches its answer).
/// </summary>
internal static class CudaEmulatorFallback
{
    [ModuleInitializer]
    internal static void UseTheEmulatorWithoutADriver()
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("MOE_CUDA_LIB_DIRS"))) return;
        // Opt-in: emulated commands took more than 15 minutes on a loaded 2-core machine, too slow for ./test.sh.
        if (Environment.GetEnvironmentVariable("MOE_CUDA_EMULATOR_TESTS") != "1") return;
        if (NativeLibrary.TryLoad("libcuda.so.1", out var driver))
        {
            NativeLibrary.Free(driver);
            return;
        }
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string emulator = Path.Combine(dir.FullName, ".device-carry", "emulator");
            if (File.Exists(Path.Combine(emulator, "libcuda.so.1")))
            {
                Environment.SetEnvironmentVariable("MOE_CUDA_LIB_DIRS", emulator);
                return;
            }
        }
    }
}

/// <summary>A fact that needs a CUDA device (or the CPU emulation of one, scripts/gpu/emulator): skipped with the probe's reason otherwise.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute()
    {
        if (!CudaProbe.TryFindDevice(out string description) && Environment.GetEnvironmentVariable("MOE_REQUIRE_CUDA") != "1")
            Skip = description;
    }
}

/// <summary>
/// `moe run`, `chat` and `bench` with <c>--device cuda</c> end to end on the tiny variants: the same command line as
/// on the CPU, the model bound on the GPU, decode steps as CUDA graphs. With bf16 weights on both devices the greedy
/// answer is the CPU's. Every command reports the backend it ran on, so each test also checks that the CUDA backend
/// (and not a CPU fallback) answered. The emulator is slow (TinyPhiChat's 51 200-row LM head), so the commands
/// generate 2–3 tokens.
/// </summary>
public sealed class CudaCliTests(TinyWeightsFixture weights) : IClassFixture<TinyWeightsFixture>
{
    private static int[] TokenIds(CliRunner.Result result) =>
        result.Json().GetProperty("tokenIds").EnumerateArray().Select(e => e.GetInt32()).ToArray();

    [CudaFact]
    public void RunOnCudaGivesTheCpuAnswer()
    {
        string[] args = ["run", "TinyPhiChat", "-w", weights.PhiWeights, "-i", weights.Picture, "-p", "What is in this picture?",
            "--max-tokens", "3", "--dtype", "bf16", "--json"];
        var cpu = CliRunner.Run([.. args, "--device", "cpu"]);
        var gpu = CliRunner.Run([.. args, "--device", "cuda"]);
        Assert.True(gpu.ExitCode == 0, gpu.Error);
        Assert.Equal(0, cpu.ExitCode);
        Assert.Equal(TokenIds(cpu), TokenIds(gpu));
        Assert.StartsWith("cuda:", gpu.Json().GetProperty("device").GetString());
        Assert.StartsWith("cpu", cpu.Json().GetProperty("device").GetString());
        var routing = gpu.Json().GetProperty("routing").EnumerateArray().ToList();
        Assert.Single(routing); // TinyPhiChat: MoE on layer 0 only; its routing came back from the device
        Assert.Equal(1.0, routing[0].GetProperty("textShare").EnumerateArray().Sum(e => e.GetDouble()), 6);
    }

    [CudaFact]
    public void RunOnCudaStreamsTheAnswerAndSummarises()
    {
        var result = CliRunner.Run("run", "TinyPhiChat", "-w", weights.PhiWeights, "-i", weights.Picture, "-p", "Hi", "--max-tokens", "2", "--device", "cuda");
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("device: cuda:", result.Out);
        Assert.Contains("expert load", result.Out);
        Assert.Contains("tokens/s", result.Out);
    }

    [CudaFact]
    public void ChatOnCudaKeepsAConversation()
    {
        string input = $"/image {weights.Picture}\nWhat is it?\nAnd the colour?\n/quit\n";
        var result = CliRunner.RunWithInput(input, "chat", "TinyPhiChat", "-w", weights.PhiWeights, "--max-tokens", "2", "--device", "cuda");
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("device: cuda:", result.Out);
        Assert.Equal(2, result.Out.Split("assistant> ").Length - 1);
    }

    [CudaFact]
    public void BenchOnCudaReportsTheDeviceAndItsSpeed()
    {
        var result = CliRunner.Run("bench", "TinyQwenMoe", "--weights", weights.QwenWeights, "--tokens", "4", "--prompt-tokens", "8", "--device", "cuda", "--json");
        Assert.True(result.ExitCode == 0, result.Error);
        var json = result.Json();
        Assert.StartsWith("cuda:", json.GetProperty("device").GetString());
        Assert.Equal(3, json.GetProperty("decodeSteps").GetInt32());
        Assert.True(json.GetProperty("decodeTokensPerSecond").GetDouble() > 0);
        Assert.True(json.GetProperty("prefillTokensPerSecond").GetDouble() > 0);
        // A GPU in the spec-sheet table has limits and fractions; another (the emulator) reports them as unknown.
        var peak = json.GetProperty("readGBps");
        if (peak.ValueKind != System.Text.Json.JsonValueKind.Null)
            Assert.True(json.GetProperty("decodeFractionOfLimit").GetDouble() > 0);
    }
}
