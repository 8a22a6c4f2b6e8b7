using System.Security.Cryptography;
using System.Text.Json;
using PeerBench;

namespace PeerBench.Tests;

/// <summary>
/// The GGUF writer against an independent reading: TestData/tiny-gguf.json was made by
/// tests/reference/gguf_check.py (a GGUF reader written from the specification in Python, which validates the
/// header, metadata types, tensor offsets, alignment, block sizes and scales) from the tiny files this writer
/// made; the tests write the same files again and compare bytes and layout.
/// </summary>
public sealed class GgufWriterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("peerbench-gguf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static JsonElement Golden(string type)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "TestData", "tiny-gguf.json")));
        return doc.RootElement.GetProperty($"tiny-{type}.gguf").Clone();
    }

    [Theory]
    [InlineData(GgmlType.BF16, "bf16")]
    [InlineData(GgmlType.Q8_0, "q8_0")]
    [InlineData(GgmlType.Q4_0, "q4_0")]
    [InlineData(GgmlType.Q4_K, "q4_k")]
    public void Tiny_file_matches_the_independently_validated_golden(GgmlType type, string name)
    {
        var golden = Golden(name);
        var writer = Qwen3MoeGguf.Build(Qwen3MoeShape.Tiny, type, seed: 1);
        string path = Path.Combine(_dir, $"tiny-{name}.gguf");
        writer.Write(path);

        Assert.Equal(golden.GetProperty("bytes").GetInt64(), new FileInfo(path).Length);
        Assert.Equal(golden.GetProperty("bytes").GetInt64(), writer.FileBytes());
        var tensors = golden.GetProperty("tensors");
        Assert.Equal(tensors.EnumerateObject().Count(), writer.Tensors.Count);
        foreach (var t in writer.Tensors)
        {
            var g = tensors.GetProperty(t.Name);
            Assert.Equal(g.GetProperty("dims").EnumerateArray().Select(d => d.GetInt64()), t.Dims);
            Assert.Equal(g.GetProperty("type").GetString(), t.Type.ToString());
            Assert.Equal(g.GetProperty("bytes").GetInt64(), t.ByteSize);
        }
        Assert.Equal(golden.GetProperty("sha256").GetString(), Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path))));
    }

    [Fact]
    public void Q4_K_falls_back_to_Q4_0_only_for_rows_that_are_not_whole_super_blocks()
    {
        Assert.Equal(GgmlType.Q4_K, Qwen3MoeGguf.MatrixType(GgmlType.Q4_K, 2048));
        Assert.Equal(GgmlType.Q4_0, Qwen3MoeGguf.MatrixType(GgmlType.Q4_K, 4128));
        Assert.Equal(GgmlType.Q8_0, Qwen3MoeGguf.MatrixType(GgmlType.Q8_0, 4128));
        // Both 4.5 bits per weight, so a Q4_K file streams the bytes of a Q4_0 one.
        Assert.Equal(GgmlTypes.Bytes(GgmlType.Q4_0, 2048, 10), GgmlTypes.Bytes(GgmlType.Q4_K, 2048, 10));
    }

    /// <summary>The full-size stand-in streams MoeLlavaQwen4e's bytes per decode token (ModelBench: 3.864 GB at
    /// bf16), counted here from the spec's sizes, not from the writer: 24 layers of attention (q, k, v, o at
    /// 2048²), 12 dense + 12×top-2 MoE FFNs of 3·2048·5504, lm_head 151936·2048, one embedding row, all bf16; plus
    /// the f32 norms and routers, which the stand-in has in other numbers (qwen3moe: q/k norms, 24 routers).</summary>
    [Fact]
    public void Full_size_stand_in_streams_the_bytes_per_token_of_MoeLlavaQwen4e()
    {
        long ours = 24L * 4 * 2048 * 2048 * 2 + (12L + 12 * 2) * 3 * 2048 * 5504 * 2 + 151936L * 2048 * 2 + 2048 * 2;
        var s = Qwen3MoeShape.MoeLlavaQwen4eBytes;
        var writer = Qwen3MoeGguf.Build(s, GgmlType.BF16, seed: 1);
        long smallF32 = (24L * (2048 * 2 + 128 * 2) + 2048 + 24L * 4 * 2048) * 4;
        Assert.Equal(ours, Qwen3MoeGguf.DecodeBytesPerToken(writer, s) - smallF32);
        Assert.Equal(0.75 * 5504, s.ExpertFfn);
        Assert.Equal(151936, s.Vocab);
    }

    [Fact]
    public void Never_overwrites_an_existing_file()
    {
        string path = Path.Combine(_dir, "taken.gguf");
        File.WriteAllText(path, "a user's file");
        var writer = Qwen3MoeGguf.Build(Qwen3MoeShape.Tiny, GgmlType.Q8_0, seed: 1);
        var e = Assert.Throws<IOException>(() => writer.Write(path));
        Assert.Contains(path, e.Message);
        Assert.Equal("a user's file", File.ReadAllText(path));
        Assert.False(File.Exists(path + ".partial"));
    }

    [Fact]
    public void A_failed_write_leaves_neither_the_file_nor_its_partial()
    {
        var writer = new GgufWriter();
        writer.Add("general.architecture", "test");
        writer.AddTensor(new GgufTensor("short", [32], GgmlType.F32, (s, _) => s.Write(new byte[100]))); // needs 128
        string path = Path.Combine(_dir, "broken.gguf");
        var e = Assert.Throws<InvalidOperationException>(() => writer.Write(path));
        Assert.Contains("short", e.Message);
        Assert.False(File.Exists(path));
        Assert.False(File.Exists(path + ".partial"));
    }

    [Fact]
    public void Rows_that_are_not_whole_blocks_are_refused_when_added()
    {
        var writer = new GgufWriter();
        var e = Assert.Throws<ArgumentException>(() => writer.AddTensor(new GgufTensor("odd", [33, 2], GgmlType.Q8_0, (_, _) => { })));
        Assert.Contains("32", e.Message);
        Assert.Throws<ArgumentException>(() => writer.AddTensor(new GgufTensor("rank5", [32, 1, 1, 1, 1], GgmlType.F32, (_, _) => { })));
    }

    [Fact]
    public void Byte_tokens_follow_GPT2s_byte_to_character_map()
    {
        var bytes = Qwen3MoeGguf.ByteTokens().ToArray();
        Assert.Equal(256, bytes.Distinct().Count());
        Assert.Equal("!", bytes['!']);
        Assert.Equal("\u0120", bytes[' ']);  // 'Ġ': space is the 33rd unprintable byte (0x00-0x20 → U+0100…U+0120)
        Assert.Equal("\u010A", bytes['\n']); // 'Ċ'
    }
}
