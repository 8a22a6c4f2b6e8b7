using System.Buffers.Binary;

namespace PeerBench;

/// <summary>
/// Shapes of the llama.cpp stand-in for MoeLlavaQwen4e. llama.cpp has no architecture with MoE on every other layer
/// and plain dense layers between (Qwen-1 MoE-LLaVA), so the peer runs a <c>qwen3moe</c> model with MoE on all 24
/// layers and a narrower expert FFN, chosen so that a decode token streams the same bytes:
/// 12 dense FFNs of 5504 + 12 MoE layers × top-2 of 5504 = 36 FFNs of 5504 = 24 layers × top-2 × 4128 (0.75 × 5504).
/// Attention, embeddings and lm_head have MoeLlavaQwen4e's sizes (width 2048, 16 heads × 128, vocabulary 151936).
/// </summary>
public sealed record Qwen3MoeShape
{
    public int Embedding { get; init; } = 2048;
    public int Layers { get; init; } = 24;
    public int Heads { get; init; } = 16;
    public int KvHeads { get; init; } = 16;
    public int HeadDim { get; init; } = 128;
    public int Experts { get; init; } = 4;
    public int ExpertsUsed { get; init; } = 2;
    public int ExpertFfn { get; init; } = 4128;
    public int Vocab { get; init; } = 151936;
    public int EosId { get; init; } = 151643;
    public uint ContextLength { get; init; } = 8192;
    public float RopeTheta { get; init; } = 10000f;
    public float RmsEps { get; init; } = 1e-6f;

    public static Qwen3MoeShape MoeLlavaQwen4eBytes { get; } = new();

    /// <summary>A toy of the same structure for the self-test (block sizes of every type still fit).</summary>
    public static Qwen3MoeShape Tiny { get; } = new()
    {
        Embedding = 256, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 64, ExpertFfn = 512, Vocab = 1024, EosId = 1000, ContextLength = 2048,
    };
}

/// <summary>Writes a random-weight qwen3moe GGUF of a <see cref="Qwen3MoeShape"/> in one weight type.</summary>
public static class Qwen3MoeGguf
{
    /// <summary>The type a matrix gets: the requested one, except that Q4_K super-blocks need rows of a multiple
    /// of 256 values, which the expert down projection (rows of 4128) is not; it gets Q4_0, also 4.5 bits per
    /// weight, as llama.cpp's own quantizer falls back for such rows.</summary>
    public static GgmlType MatrixType(GgmlType requested, long rowLength) =>
        requested == GgmlType.Q4_K && rowLength % 256 != 0 ? GgmlType.Q4_0 : requested;

    public static GgufWriter Build(Qwen3MoeShape s, GgmlType type, ulong seed)
    {
        var g = new GgufWriter();
        const string arch = "qwen3moe";
        g.Add("general.architecture", arch);
        g.Add("general.name", $"random qwen3moe {s.Layers}x{s.Experts}e top-{s.ExpertsUsed} ffn {s.ExpertFfn} (MoeCompiler PeerBench, seed {seed})");
        g.Add("general.alignment", GgufWriter.Alignment);
        g.Add($"{arch}.context_length", s.ContextLength);
        g.Add($"{arch}.embedding_length", (uint)s.Embedding);
        g.Add($"{arch}.block_count", (uint)s.Layers);
        g.Add($"{arch}.feed_forward_length", (uint)s.ExpertFfn);
        g.Add($"{arch}.expert_feed_forward_length", (uint)s.ExpertFfn);
        g.Add($"{arch}.attention.head_count", (uint)s.Heads);
        g.Add($"{arch}.attention.head_count_kv", (uint)s.KvHeads);
        g.Add($"{arch}.attention.key_length", (uint)s.HeadDim);
        g.Add($"{arch}.attention.value_length", (uint)s.HeadDim);
        g.Add($"{arch}.rope.freq_base", s.RopeTheta);
        g.Add($"{arch}.attention.layer_norm_rms_epsilon", s.RmsEps);
        g.Add($"{arch}.expert_count", (uint)s.Experts);
        g.Add($"{arch}.expert_used_count", (uint)s.ExpertsUsed);
        AddTokenizer(g, s);

        int qDim = s.Heads * s.HeadDim, kvDim = s.KvHeads * s.HeadDim;
        void Matrix(string name, long inputs, params long[] outer) =>
            g.AddTensor(new GgufTensor(name, [inputs, .. outer], MatrixType(type, inputs), (st, t) => WriteRandom(st, t, seed, 1.0 / Math.Sqrt(inputs))));
        void Norm(string name, long n) =>
            g.AddTensor(new GgufTensor(name, [n], GgmlType.F32, (st, t) => WriteOnes(st, t)));

        // The embedding shares lm_head's type (llama.cpp's get_rows reads every type written here).
        g.AddTensor(new GgufTensor("token_embd.weight", [s.Embedding, s.Vocab], MatrixType(type, s.Embedding), (st, t) => WriteRandom(st, t, seed, 1.0)));
        for (int l = 0; l < s.Layers; l++)
        {
            string b = $"blk.{l}.";
            Norm(b + "attn_norm.weight", s.Embedding);
            Matrix(b + "attn_q.weight", s.Embedding, qDim);
            Matrix(b + "attn_k.weight", s.Embedding, kvDim);
            Matrix(b + "attn_v.weight", s.Embedding, kvDim);
            Matrix(b + "attn_output.weight", qDim, s.Embedding);
            Norm(b + "attn_q_norm.weight", s.HeadDim);
            Norm(b + "attn_k_norm.weight", s.HeadDim);
            Norm(b + "ffn_norm.weight", s.Embedding);
            // The router stays f32, as ours does (routing decisions must not move with the weight type).
            g.AddTensor(new GgufTensor(b + "ffn_gate_inp.weight", [s.Embedding, s.Experts], GgmlType.F32, (st, t) => WriteRandom(st, t, seed, 1.0 / Math.Sqrt(s.Embedding))));
            Matrix(b + "ffn_gate_exps.weight", s.Embedding, s.ExpertFfn, s.Experts);
            Matrix(b + "ffn_up_exps.weight", s.Embedding, s.ExpertFfn, s.Experts);
            Matrix(b + "ffn_down_exps.weight", s.ExpertFfn, s.Embedding, s.Experts);
        }
        Norm("output_norm.weight", s.Embedding);
        Matrix("output.weight", s.Embedding, s.Vocab);
        return g;
    }

    /// <summary>Bytes one decode token streams: every tensor, except that expert tensors count top-k of their
    /// experts and the embedding one row (the accounting of ModelBench's WeightBudget).</summary>
    public static long DecodeBytesPerToken(GgufWriter g, Qwen3MoeShape s) => g.Tensors.Sum(t =>
        t.Name.EndsWith("_exps.weight", StringComparison.Ordinal) ? t.ByteSize / s.Experts * s.ExpertsUsed
        : t.Name == "token_embd.weight" ? t.ByteSize / s.Vocab
        : t.ByteSize);

    /// <summary>
    /// A byte-level GPT-2 style vocabulary of the model's full size (so lm_head keeps MoeLlavaQwen4e's 151936 rows):
    /// the 256 byte tokens in GPT-2's byte-to-character mapping, two merge products, then unique filler tokens, and
    /// the end-of-text control token at Qwen's id. The benchmark feeds token ids directly; the vocabulary only has to
    /// satisfy llama.cpp's loader (unique strings, merges present, a newline byte token).
    /// </summary>
    private static void AddTokenizer(GgufWriter g, Qwen3MoeShape s)
    {
        var tokens = new List<string>(s.Vocab);
        tokens.AddRange(ByteTokens());
        tokens.Add("to");
        tokens.Add("tok");
        while (tokens.Count < s.Vocab) tokens.Add("tok" + tokens.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        tokens[s.EosId] = "<|endoftext|>";
        var types = Enumerable.Repeat(1, s.Vocab).ToArray(); // 1 = normal
        types[s.EosId] = 3;                                  // 3 = control
        g.Add("tokenizer.ggml.model", "gpt2");
        g.Add("tokenizer.ggml.pre", "qwen2");
        g.Add("tokenizer.ggml.tokens", tokens);
        g.Add("tokenizer.ggml.token_type", types);
        g.Add("tokenizer.ggml.merges", new[] { "t o", "to k" });
        g.Add("tokenizer.ggml.eos_token_id", (uint)s.EosId);
        g.Add("tokenizer.ggml.bos_token_id", (uint)s.EosId);
        g.Add("tokenizer.ggml.padding_token_id", (uint)s.EosId);
    }

    /// <summary>GPT-2's reversible byte → printable character map: printable Latin-1 bytes map to themselves, the
    /// other 68 to U+0100 onwards, in byte order.</summary>
    public static IEnumerable<string> ByteTokens()
    {
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            yield return ((char)(printable ? b : next++)).ToString();
        }
    }

    private static void WriteOnes(Stream s, GgufTensor t)
    {
        Span<byte> one = stackalloc byte[4];
        BinaryPrimitives.WriteSingleLittleEndian(one, 1f);
        for (long i = 0; i < t.Dims[0] * t.Rows; i++) s.Write(one);
    }

    /// <summary>Random values of amplitude about <paramref name="scale"/> in the tensor's type, from a seeded
    /// xorshift stream per tensor (deterministic: the same seed writes the same file). Quantized types get random
    /// codes with one fixed block scale: the speed of their kernels does not depend on the values.</summary>
    private static void WriteRandom(Stream s, GgufTensor t, ulong seed, double scale)
    {
        ulong state = seed * 0x9E3779B97F4A7C15UL ^ Fnv(t.Name);
        if (state == 0) state = 1;
        ulong Next()
        {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            return state;
        }
        var (values, blockBytes) = GgmlTypes.Block(t.Type);
        long blocks = t.ByteSize / blockBytes;
        const int chunkBlocks = 4096;
        var buffer = new byte[chunkBlocks * blockBytes];
        float amplitude = (float)(scale * Math.Sqrt(3)); // uniform on ±a has standard deviation a/√3
        for (long done = 0; done < blocks;)
        {
            int n = (int)Math.Min(chunkBlocks, blocks - done);
            var span = buffer.AsSpan(0, n * blockBytes);
            FillRandomBytes(span, Next);
            switch (t.Type)
            {
                case GgmlType.F32:
                    for (int i = 0; i < n; i++)
                        BinaryPrimitives.WriteSingleLittleEndian(span[(i * 4)..], Uniform(BinaryPrimitives.ReadUInt32LittleEndian(span[(i * 4)..])) * amplitude);
                    break;
                case GgmlType.BF16:
                    for (int i = 0; i < n; i++)
                        BinaryPrimitives.WriteUInt16LittleEndian(span[(i * 2)..], HalfBits.BF16(Uniform((uint)BinaryPrimitives.ReadUInt16LittleEndian(span[(i * 2)..]) << 16) * amplitude));
                    break;
                case GgmlType.Q8_0:
                    for (int i = 0; i < n; i++)
                    {
                        var block = span.Slice(i * 34, 34);
                        HalfBits.PutF16(block, amplitude / 127f);
                        for (int j = 2; j < 34; j++) if (block[j] == 0x80) block[j] = 0x81; // codes in −127…127
                    }
                    break;
                case GgmlType.Q4_0:
                    for (int i = 0; i < n; i++)
                    {
                        var block = span.Slice(i * 18, 18);
                        HalfBits.PutF16(block, amplitude / 7f);
                        // Codes 0…15 mean −8…7; code 0 becomes 8 (value 0) so the values are symmetric about
                        // zero: a shared bias in every weight would make all rows alike (and greedy decode stick).
                        for (int j = 2; j < 18; j++)
                        {
                            int lo = block[j] & 15, hi = block[j] >> 4;
                            block[j] = (byte)((lo == 0 ? 8 : lo) | (hi == 0 ? 8 : hi) << 4);
                        }
                    }
                    break;
                case GgmlType.Q4_K:
                    for (int i = 0; i < n; i++)
                    {
                        var block = span.Slice(i * 144, 144);
                        // d, dmin, then 12 bytes holding eight 6-bit scales and mins (ggml's get_scale_min_k4):
                        // bytes 0–7 = 32 give sub-blocks 0–3 scale and min 32 (and 0 as the top bits of 4–7);
                        // bytes 8–11 = 0x88 give sub-blocks 4–7 scale and min 8. Values = d·scale·q − dmin·min.
                        // dmin = 7.5·d centres the codes 0…15 (mean 7.5) on zero in every sub-block (scale = min).
                        HalfBits.PutF16(block, amplitude / (7.5f * 32f));
                        HalfBits.PutF16(block[2..], amplitude / 32f);
                        for (int j = 4; j < 12; j++) block[j] = 32;
                        for (int j = 12; j < 16; j++) block[j] = 0x88;
                    }
                    break;
            }
            s.Write(span);
            done += n;
            _ = values;
        }
    }

    private static float Uniform(uint bits) => (int)bits / 2147483648f; // −1 … 1

    private static void FillRandomBytes(Span<byte> span, Func<ulong> next)
    {
        int i = 0;
        for (; i + 8 <= span.Length; i += 8) BinaryPrimitives.WriteUInt64LittleEndian(span[i..], next());
        if (i < span.Length)
        {
            ulong last = next();
            for (; i < span.Length; i++, last >>= 8) span[i] = (byte)last;
        }
    }

    private static ulong Fnv(string text)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in text) h = (h ^ c) * 1099511628211UL;
        return h;
    }
}
