using System.Diagnostics;
using LLama;
using LLama.Common;
using LLama.Native;

namespace PeerBench;

/// <summary>
/// llama.cpp (through LLamaSharp and its CPU backend, which picks the AVX-512 build on this CPU) on a GGUF file:
/// one prefill of the prompt in a single batch, then greedy batch-1 decode steps. Sampling is an argmax over the
/// last row's logits done here, the same work for every type.
/// </summary>
public sealed class LlamaPeer : IDecodingPeer
{
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private readonly LLamaBatch _batch = new();
    private int _position;
    private int _last;

    private LlamaPeer(LLamaWeights weights, LLamaContext context)
    {
        _weights = weights;
        _context = context;
    }

    public static int Run(string gguf, int promptRows, int decode, int threads, ulong seed, bool verbose)
    {
        if (!File.Exists(gguf)) throw new PeerException($"{gguf}: no such GGUF file (write it with: PeerBench write-gguf)");
        // llama.cpp logs to stderr through this callback: warnings and errors only, unless --verbose.
        NativeLibraryConfig.All.WithLogCallback((level, message) =>
        {
            if (verbose || level is LLamaLogLevel.Error or LLamaLogLevel.Warning) Console.Error.Write(message);
        });
        long loadStart = Stopwatch.GetTimestamp();
        var parameters = new ModelParams(gguf)
        {
            ContextSize = (uint)(promptRows + decode + 8),
            // The whole prompt in one batch and one micro-batch, as ours prefills it in one pass.
            BatchSize = (uint)promptRows,
            UBatchSize = (uint)promptRows,
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
        };
        var weights = LLamaWeights.LoadFromFile(parameters);
        var context = weights.CreateContext(parameters);
        double loadSeconds = Stopwatch.GetElapsedTime(loadStart).TotalSeconds;
        using var peer = new LlamaPeer(weights, context);

        int vocab = context.Vocab.Count;
        int eos = context.Vocab.EOS is { } e ? (int)e : -1;
        int[] prompt = PeerProtocol.Prompt(promptRows, Math.Min(vocab, 151643), eos, seed);
        long prefillStart = Stopwatch.GetTimestamp();
        int first = peer.Prefill(prompt);
        double prefillSeconds = Stopwatch.GetElapsedTime(prefillStart).TotalSeconds;

        // llama.cpp's own summary of the instruction sets its loaded build uses ("CPU : ... AVX512 = 1 | ...").
        string features = System.Runtime.InteropServices.Marshal.PtrToStringUTF8(NativeApi.llama_print_system_info()) ?? "";
        string avx = features.Contains("AVX512 = 1", StringComparison.Ordinal) ? ", AVX-512 build" : features.Contains("AVX2 = 1", StringComparison.Ordinal) ? ", AVX2 build" : "";
        var ready = new Dictionary<string, object>
        {
            ["info"] = $"llama.cpp via LLamaSharp 0.30.0, {Path.GetFileName(gguf)}, {threads} threads{avx}",
            ["load_s"] = loadSeconds, ["vision_s"] = 0.0, ["prefill_s"] = prefillSeconds, ["prompt_rows"] = promptRows,
            ["system_info"] = features.Trim(),
        };
        return PeerProtocol.Serve(peer, first, decode, ready, loadSeconds);
    }

    private int Prefill(int[] prompt)
    {
        _batch.Clear();
        for (int i = 0; i < prompt.Length; i++) _batch.Add((LLamaToken)prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
        Decode();
        _position = prompt.Length;
        _last = PeerProtocol.ArgMax(_context.NativeHandle.GetLogitsIth(_batch.TokenCount - 1));
        return _last;
    }

    public int Step()
    {
        _batch.Clear();
        _batch.Add((LLamaToken)_last, _position, LLamaSeqId.Zero, true);
        Decode();
        _position++;
        _last = PeerProtocol.ArgMax(_context.NativeHandle.GetLogitsIth(0));
        return _last;
    }

    private void Decode()
    {
        var result = _context.Decode(_batch);
        if (result != DecodeResult.Ok) throw new PeerException($"llama_decode failed: {result}");
    }

    public void Dispose()
    {
        _context.Dispose();
        _weights.Dispose();
    }
}
