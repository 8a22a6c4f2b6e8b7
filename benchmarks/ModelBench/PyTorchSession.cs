using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using MoeCompiler.Models;

namespace ModelBench;

/// <summary>
/// One pytorch_decode.py process (shipped next to this program) on the same checkpoint file, prompt ids and
/// preprocessed pixels. The script is an independent minimal Qwen-1 + DeepSpeed-MoE + CLIP implementation
/// written from the reference description. <see cref="Start"/> returns once the script has loaded, encoded the
/// image and prefilled (its "ready" line); the process then waits on stdin, so <see cref="Decode"/> can run its
/// decode steps in rounds interleaved with ours, and <see cref="Finish"/> reads its final numbers.
/// </summary>
public sealed class PyTorchSession : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly string _dtype;
    private readonly TimeSpan _preprocessTime;
    private readonly List<double> _roundSeconds = [];
    private JsonElement _ready;
    private bool _finished;

    private PyTorchSession(Process process, string dtype, TimeSpan preprocessTime)
    {
        _process = process;
        _dtype = dtype;
        _preprocessTime = preprocessTime;
    }

    public string DType => _dtype;

    /// <summary>"torch 1.13.0, bf16, 2 threads", from the script's own report.</summary>
    public string Info { get; private set; } = "";

    /// <summary>Wall seconds of each <see cref="Decode"/> round as the script timed it (its decode steps only).</summary>
    public IReadOnlyList<double> RoundSeconds => _roundSeconds;

    /// <summary>Starts the script and waits until it has prefilled and made its first token.</summary>
    public static PyTorchSession Start(BenchOptions options, string dtype, ModelCatalogEntry entry, string checkpoint,
        int[] prompt, float[] pixels, TimeSpan preprocessTime)
    {
        string script = Path.Combine(AppContext.BaseDirectory, "pytorch_decode.py");
        string spec = FindSpec(entry.Name);
        string work = Path.Combine(Path.GetTempPath(), $"modelbench-{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}-{dtype}");
        Directory.CreateDirectory(work);
        try
        {
            string pixelFile = Path.Combine(work, "pixels.f32");
            using (var f = File.Create(pixelFile)) f.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(pixels.AsSpan()));
            string promptFile = Path.Combine(work, "prompt.json");
            File.WriteAllText(promptFile, JsonSerializer.Serialize(prompt));

            var start = new ProcessStartInfo(options.Python)
            {
                RedirectStandardInput = true,
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
            Process process;
            try
            {
                process = Process.Start(start) ?? throw new BenchException($"cannot start {options.Python}");
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new BenchException($"cannot start {options.Python} (--python): {e.Message}");
            }
            var session = new PyTorchSession(process, dtype, preprocessTime);
            try
            {
                process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (session._stderr) session._stderr.AppendLine(e.Data); };
                process.BeginErrorReadLine();
                session._ready = session.ReadEvent("ready");
                var r = session._ready;
                session.Info = $"torch {r.GetProperty("torch").GetString()}, {r.GetProperty("dtype").GetString()}, {r.GetProperty("threads").GetInt32()} threads";
                return session;
            }
            catch
            {
                session.Dispose();
                throw;
            }
        }
        finally
        {
            // The script has read both files once it is ready (or it has failed).
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>Time to first token and its parts, as in <see cref="RunNumbers"/>.</summary>
    public (TimeSpan Ttft, TimeSpan Vision, TimeSpan Prefill) FirstToken
    {
        get
        {
            TimeSpan vision = Seconds(_ready, "vision_s"), prefill = Seconds(_ready, "prefill_s");
            return (_preprocessTime + vision + prefill, vision, prefill);
        }
    }

    /// <summary>Runs <paramref name="steps"/> more greedy decode steps; the script's wall seconds for them.</summary>
    public double Decode(int steps)
    {
        Send("decode " + steps.ToString(CultureInfo.InvariantCulture));
        var r = ReadEvent("decoded");
        int done = r.GetProperty("steps").GetInt32();
        if (done != steps) throw new BenchException($"pytorch_decode.py ({_dtype}) ran {done} decode steps, asked for {steps}");
        double seconds = r.GetProperty("decode_s").GetDouble();
        _roundSeconds.Add(seconds);
        return seconds;
    }

    /// <summary>Ends the session: all tokens, total decode time and the script's VmHWM.</summary>
    public RunNumbers Finish()
    {
        Send("quit");
        var r = ReadEvent("done");
        _process.WaitForExit();
        _finished = true;
        if (_process.ExitCode != 0)
            throw new BenchException($"pytorch_decode.py ({_dtype}) exited with {_process.ExitCode}:\n{Stderr()}");
        var (ttft, vision, prefill) = FirstToken;
        return new RunNumbers(
            Ttft: ttft, Vision: vision, Prefill: prefill,
            Decode: Seconds(r, "decode_s"), DecodeSteps: r.GetProperty("decode_steps").GetInt32(),
            Tokens: r.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            PeakKiB: r.GetProperty("vmhwm_kib").GetInt64(), Load: Seconds(r, "load_s"));
    }

    public void Dispose()
    {
        if (!_finished && !_process.HasExited)
        {
            try { _process.Kill(); _process.WaitForExit(); }
            catch (InvalidOperationException) { } // exited meanwhile
        }
        _process.Dispose();
    }

    private void Send(string command)
    {
        try
        {
            _process.StandardInput.WriteLine(command);
            _process.StandardInput.Flush();
        }
        catch (IOException)
        {
            // The script has gone: the ReadEvent that follows reports its exit code and stderr.
        }
    }

    private static TimeSpan Seconds(JsonElement r, string name) => TimeSpan.FromSeconds(r.GetProperty(name).GetDouble());

    /// <summary>The script's next JSON line, which must be the event <paramref name="expected"/>.</summary>
    private JsonElement ReadEvent(string expected)
    {
        while (true)
        {
            string? line = _process.StandardOutput.ReadLine();
            if (line is null)
            {
                _process.WaitForExit();
                _finished = true;
                throw new BenchException($"pytorch_decode.py ({_dtype}) ended (exit {_process.ExitCode}) before '{expected}':\n{Stderr()}");
            }
            if (!line.StartsWith('{')) continue; // not ours: a library writing to stdout
            JsonElement r;
            try
            {
                using var json = JsonDocument.Parse(line);
                r = json.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new BenchException($"pytorch_decode.py ({_dtype}) printed a malformed line ({e.Message}): {line}");
            }
            string? name = r.TryGetProperty("event", out var ev) ? ev.GetString() : null;
            if (name != expected) throw new BenchException($"pytorch_decode.py ({_dtype}) answered '{name}', expected '{expected}': {line}");
            return r;
        }
    }

    private string Stderr()
    {
        lock (_stderr) return _stderr.ToString();
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
