using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Generation;

namespace ModelBench;

/// <summary>
/// One peer process that speaks ModelBench's line protocol (one JSON object per stdout line; "decode N" and "quit"
/// on stdin): pytorch_decode.py (shipped next to this program; an independent minimal Qwen-1 + DeepSpeed-MoE + CLIP
/// implementation written from the reference description, on the same checkpoint file, prompt ids and pixels), or
/// a PeerBench peer (benchmarks/PeerBench: llama.cpp on a GGUF of the same bytes per token, libtorch 2.10 on the
/// same shapes with its own random weights). <see cref="StartPyTorch"/> and <see cref="StartPeerBench"/> return
/// once the peer has loaded, encoded the image and prefilled (its "ready" line); the process then waits on stdin,
/// so <see cref="Decode"/> can run its decode steps in rounds interleaved with ours, and <see cref="Finish"/> reads
/// its final numbers.
/// </summary>
public sealed class PeerSession : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly string _label;
    private readonly TimeSpan _preprocessTime;
    private readonly List<double> _roundSeconds = [];
    private JsonElement _ready;
    private bool _finished;

    private PeerSession(Process process, string label, bool sameWeights, TimeSpan preprocessTime)
    {
        _process = process;
        _label = label;
        SameWeights = sameWeights;
        _preprocessTime = preprocessTime;
    }

    /// <summary>The column name: "PyTorch bf16", "llama.cpp q8_0", "libtorch bf16".</summary>
    public string Label => _label;

    /// <summary>Whether the peer runs our checkpoint (so its greedy tokens can be compared with ours).</summary>
    public bool SameWeights { get; }

    /// <summary>"torch 1.13.0, bf16, 2 threads", from the peer's own report.</summary>
    public string Info { get; private set; } = "";

    /// <summary>Rows the peer prefilled (text + image rows), from its "ready" line.</summary>
    public int PromptRows => _ready.TryGetProperty("prompt_rows", out var rows) ? rows.GetInt32() : -1;

    /// <summary>Wall seconds of each <see cref="Decode"/> round as the script timed it (its decode steps only).</summary>
    public IReadOnlyList<double> RoundSeconds => _roundSeconds;

    /// <summary>Starts pytorch_decode.py and waits until it has prefilled and made its first token.</summary>
    public static PeerSession StartPyTorch(BenchOptions options, string dtype, ModelCatalogEntry entry, string checkpoint,
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
            return Launch(start, "PyTorch " + dtype, sameWeights: true, preprocessTime, "--python");
        }
        finally
        {
            // The script has read both files once it is ready (or it has failed).
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>
    /// Starts one PeerBench peer through <see cref="BenchOptions.PeerCommand"/> (benchmarks/PeerBench/peer.sh) and
    /// waits until it has prefilled <paramref name="promptRows"/> rows: <c>llama-TYPE</c> runs llama.cpp on
    /// GgufDirectory/qwen3moe-TYPE.gguf (text rows only: the GGUF model has no vision tower), <c>torch-bf16</c>
    /// runs libtorch on MoeLlavaQwen4e's shapes with the vision tower (the image's rows plus the same text tokens).
    /// </summary>
    public static PeerSession StartPeerBench(BenchOptions options, string peer, int promptRows, int textTokens, TimeSpan preprocessTime)
    {
        var start = new ProcessStartInfo(options.PeerCommand!)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        string threads = options.Threads.ToString(CultureInfo.InvariantCulture);
        string decode = options.DecodeSteps.ToString(CultureInfo.InvariantCulture);
        string seed = options.Seed.ToString(CultureInfo.InvariantCulture);
        string[] arguments;
        string label;
        if (peer.StartsWith("llama-", StringComparison.Ordinal))
        {
            string type = peer["llama-".Length..];
            string gguf = Path.Combine(options.GgufDirectory!, $"qwen3moe-{type}.gguf");
            if (!File.Exists(gguf))
                throw new BenchException($"{gguf}: no GGUF for peer {peer} (write it with: benchmarks/PeerBench/peer.sh write-gguf --type {type} --out {gguf})");
            arguments = ["serve", "llama", "--gguf", gguf, "--prompt-rows", promptRows.ToString(CultureInfo.InvariantCulture), "--decode", decode, "--threads", threads, "--seed", seed];
            label = "llama.cpp " + type;
        }
        else
        {
            arguments = ["serve", "torch", "--text-tokens", textTokens.ToString(CultureInfo.InvariantCulture), "--decode", decode, "--threads", threads, "--seed", seed];
            label = "libtorch bf16";
        }
        foreach (string a in arguments) start.ArgumentList.Add(a);
        return Launch(start, label, sameWeights: false, preprocessTime, "--peer-command");
    }

    private static PeerSession Launch(ProcessStartInfo start, string label, bool sameWeights, TimeSpan preprocessTime, string option)
    {
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new BenchException($"cannot start {start.FileName}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new BenchException($"cannot start {start.FileName} ({option}): {e.Message}");
        }
        var session = new PeerSession(process, label, sameWeights, preprocessTime);
        try
        {
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (session._stderr) session._stderr.AppendLine(e.Data); };
            process.BeginErrorReadLine();
            session._ready = session.ReadEvent("ready");
            var r = session._ready;
            session.Info = r.TryGetProperty("info", out var info) ? info.GetString() ?? label
                : $"torch {r.GetProperty("torch").GetString()}, {r.GetProperty("dtype").GetString()}, {r.GetProperty("threads").GetInt32()} threads";
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
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
        if (done != steps) throw new BenchException($"{_label} ran {done} decode steps, asked for {steps}");
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
            throw new BenchException($"{_label} exited with {_process.ExitCode}:\n{Stderr()}");
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
                throw new BenchException($"{_label} ended (exit {_process.ExitCode}) before '{expected}':\n{Stderr()}");
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
                throw new BenchException($"{_label} printed a malformed line ({e.Message}): {line}");
            }
            string? name = r.TryGetProperty("event", out var ev) ? ev.GetString() : null;
            if (name != expected) throw new BenchException($"{_label} answered '{name}', expected '{expected}': {line}");
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
