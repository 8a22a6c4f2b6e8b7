using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace PeerBench;

/// <summary>A peer that has prefilled its prompt and made its first token, and can go on one greedy step at a time.</summary>
public interface IDecodingPeer : IDisposable
{
    /// <summary>One batch-1 decode step: feeds the last token, returns the greedy next one.</summary>
    int Step();
}

/// <summary>
/// The line protocol ModelBench speaks with its peers (the same as pytorch_decode.py's): one JSON object per stdout
/// line. After loading and prefilling, the peer prints {"event":"ready", "info", "load_s", "vision_s",
/// "prefill_s", ...}; then reads commands from stdin: "decode N" → {"event":"decoded","steps":N,"decode_s",
/// "tokens"}; "quit" → {"event":"done","tokens","decode_steps","decode_s","load_s","vmhwm_kib"}.
/// Anything a native library prints to stdout is not JSON and ModelBench skips it.
/// </summary>
public static class PeerProtocol
{
    public static int Serve(IDecodingPeer peer, int firstToken, int maxDecode, Dictionary<string, object> ready, double loadSeconds)
    {
        var tokens = new List<int> { firstToken };
        ready["event"] = "ready";
        ready["vmhwm_kib"] = PeakKiB();
        Emit(ready);
        double decodeSeconds = 0;
        int decodeSteps = 0;
        string? line;
        while ((line = Console.In.ReadLine()) is not null)
        {
            string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0) continue;
            if (parts[0] == "quit") break;
            if (parts[0] != "decode" || parts.Length != 2 || !int.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) || n < 1)
            {
                Emit(new() { ["event"] = "error", ["message"] = $"unknown command '{line}'" });
                return 2;
            }
            if (decodeSteps + n > maxDecode)
            {
                Emit(new() { ["event"] = "error", ["message"] = $"decode {n} exceeds --decode {maxDecode} (the context was sized for it)" });
                return 2;
            }
            var fresh = new List<int>(n);
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < n; i++) fresh.Add(peer.Step());
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            decodeSeconds += seconds;
            decodeSteps += n;
            tokens.AddRange(fresh);
            Emit(new() { ["event"] = "decoded", ["steps"] = n, ["decode_s"] = seconds, ["tokens"] = fresh });
        }
        Emit(new()
        {
            ["event"] = "done", ["tokens"] = tokens, ["decode_steps"] = decodeSteps, ["decode_s"] = decodeSeconds,
            ["load_s"] = loadSeconds, ["vmhwm_kib"] = PeakKiB(),
        });
        return 0;
    }

    public static void Emit(Dictionary<string, object> fields)
    {
        Console.Out.WriteLine(JsonSerializer.Serialize(fields));
        Console.Out.Flush();
    }

    /// <summary>Pseudo-random prompt ids below <paramref name="limit"/> that are never <paramref name="eos"/>.</summary>
    public static int[] Prompt(int rows, int limit, int eos, ulong seed)
    {
        var rng = new Random(unchecked((int)seed));
        var ids = new int[rows];
        for (int i = 0; i < rows; i++)
        {
            int id;
            do id = rng.Next(limit); while (id == eos);
            ids[i] = id;
        }
        return ids;
    }

    /// <summary>VmHWM of this process (KiB), 0 where /proc is missing.</summary>
    public static long PeakKiB() => Status("VmHWM:");

    /// <summary>VmRSS of this process (KiB), 0 where /proc is missing.</summary>
    public static long ResidentKiB() => Status("VmRSS:");

    private static long Status(string field)
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return 0;
        foreach (string line in File.ReadLines(status))
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        return 0;
    }

    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}
