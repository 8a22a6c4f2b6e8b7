using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using MoeCompiler.Models;

namespace ModelBench;

/// <summary>
/// Runs pytorch_decode.py (shipped next to this program) on the same checkpoint file, prompt ids and preprocessed
/// pixels, and reads its one-line JSON result. The script is an independent minimal Qwen-1 + DeepSpeed-MoE +
/// CLIP implementation written from the reference description.
/// </summary>
public static class PyTorchRun
{
    public static (RunNumbers Numbers, string Info) Run(BenchOptions options, string dtype, ModelCatalogEntry entry, string checkpoint,
        int[] prompt, float[] pixels, TimeSpan preprocessTime)
    {
        string script = Path.Combine(AppContext.BaseDirectory, "pytorch_decode.py");
        string spec = FindSpec(entry.Name);
        string work = Path.Combine(Path.GetTempPath(), "modelbench-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(work);
        try
        {
            string pixelFile = Path.Combine(work, "pixels.f32");
            using (var f = File.Create(pixelFile)) f.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(pixels.AsSpan()));
            string promptFile = Path.Combine(work, "prompt.json");
            File.WriteAllText(promptFile, JsonSerializer.Serialize(prompt));

            var start = new ProcessStartInfo(options.Python)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string a in new[]
            {
                script, "--weights", checkpoint, "--spec", spec, "--prompt", promptFile, "--pixels", pixelFile,
                "--decode", options.DecodeSteps.ToString(CultureInfo.InvariantCulture),
                "--threads", options.Threads.ToString(CultureInfo.InvariantCulture), "--dtype", dtype,
            }) start.ArgumentList.Add(a);
            using var process = Process.Start(start) ?? throw new BenchException($"cannot start {options.Python}");
            var stderr = process.StandardError.ReadToEndAsync();
            string stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
                throw new BenchException($"pytorch_decode.py failed (exit {process.ExitCode}):\n{stderr.Result}");
            string? last = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
            if (last is null) throw new BenchException("pytorch_decode.py printed nothing");
            using var json = JsonDocument.Parse(last);
            var r = json.RootElement;
            TimeSpan S(string name) => TimeSpan.FromSeconds(r.GetProperty(name).GetDouble());
            var numbers = new RunNumbers(
                Ttft: preprocessTime + S("vision_s") + S("prefill_s"), Vision: S("vision_s"), Prefill: S("prefill_s"),
                Decode: S("decode_s"), DecodeSteps: r.GetProperty("decode_steps").GetInt32(),
                Tokens: r.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                PeakKiB: r.GetProperty("vmhwm_kib").GetInt64(), Load: S("load_s"));
            string info = $"torch {r.GetProperty("torch").GetString()}, {r.GetProperty("dtype").GetString()}, {r.GetProperty("threads").GetInt32()} threads";
            return (numbers, info);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>The spec JSON this variant was compiled from (copied next to the program at build time).</summary>
    private static string FindSpec(string variant)
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "specs");
        foreach (string path in Directory.EnumerateFiles(dir, "*.json"))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.TryGetProperty("name", out var name) && name.GetString() == variant) return path;
        }
        throw new BenchException($"no spec for {variant} under {dir}");
    }
}
