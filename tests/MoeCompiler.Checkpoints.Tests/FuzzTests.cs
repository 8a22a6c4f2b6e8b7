using System.Buffers.Binary;
using System.Text;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Checkpoints.Tests;

/// <summary>
/// Bounded, seeded mutation loops: every mutated safetensors header, torch zip and pickle must either load
/// (and then every tensor must be readable without faulting) or fail with a CheckpointException; nothing else.
/// </summary>
public class FuzzTests
{
    // MOE_FUZZ_ITERATIONS raises the count for a longer local run; the default keeps the suite fast.
    private static readonly int Iterations = int.TryParse(Environment.GetEnvironmentVariable("MOE_FUZZ_ITERATIONS"), out int n) ? n : 400;

    // JSON punctuation, digits and the pieces of \u escapes (lone surrogates once broke the reader)
    private const string JsonAlphabet = "{}[]\",:0123456789-.eE \\udDfF";

    private static byte[] Mutate(Random random, byte[] original, int start, int end)
    {
        var bytes = (byte[])original.Clone();
        int edits = random.Next(1, 4);
        for (int i = 0; i < edits; i++)
        {
            int at = random.Next(start, end);
            switch (random.Next(4))
            {
                case 0: bytes[at] = (byte)random.Next(256); break;
                case 1: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 2: bytes[at] = (byte)JsonAlphabet[random.Next(JsonAlphabet.Length)]; break;
                default:
                    {
                        // duplicate or delete a short run (keeps the declared header length, so offsets shift)
                        int length = Math.Min(random.Next(1, 8), end - at);
                        var list = bytes.ToList();
                        if (random.Next(2) == 0) list.RemoveRange(at, length);
                        else list.InsertRange(at, bytes.Skip(at).Take(length));
                        bytes = list.ToArray();
                        end = Math.Min(end, bytes.Length);
                        break;
                    }
            }
        }
        return bytes;
    }

    private static void TouchAll(CheckpointFolder folder)
    {
        foreach (var key in folder.Keys)
        {
            try
            {
                if (folder.TryGetTensor(key, out var t)) _ = t.ToFloatArray().Sum();
            }
            catch (CheckpointException) { }
        }
    }

    [Fact]
    public void Mutated_safetensors_headers_fail_cleanly()
    {
        using var temp = new TempFolder();
        string source = temp.File("source.safetensors");
        var scales = Tensor.FromFloats(new[] { 0.5f, 2f }, 2);
        var q = new Tensor(new NativeStorage(6), 0, DType.I8, new[] { 2, 3 }, "q", scales);
        SafetensorsWriter.Write(source, new Dictionary<string, Tensor>
        {
            ["model.layers.0.mlp.gate_proj.weight"] = Tensor.FromFloats(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3),
            ["model.norm.weight"] = DTypeConversion.Convert(Tensor.FromFloats(new float[] { 1, 2, 3 }, 3), DType.BF16),
            ["model.embed.weight"] = DTypeConversion.Convert(Tensor.FromFloats(new float[] { 1, 2 }, 1, 2), DType.F16),
            ["q"] = q,
        }, new Dictionary<string, string> { ["format"] = "pt" });
        var original = File.ReadAllBytes(source);
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(original);
        var random = new Random(1234);
        string path = temp.File("mutant.safetensors");
        int loaded = 0, rejected = 0;
        for (int i = 0; i < Iterations; i++)
        {
            // mostly the JSON header; sometimes the length prefix
            var bytes = random.Next(8) == 0 ? Mutate(random, original, 0, 8) : Mutate(random, original, 8, headerEnd);
            File.WriteAllBytes(path, bytes);
            try
            {
                using var folder = CheckpointFolder.Open(path);
                TouchAll(folder);
                loaded++;
            }
            catch (CheckpointException e)
            {
                Assert.Contains(path, e.Message);
                rejected++;
            }
        }
        Assert.True(rejected > Iterations / 2, $"only {rejected} of {Iterations} mutants rejected");
        Assert.Equal(Iterations, loaded + rejected);
    }

    [Fact]
    public void Mutated_pickles_fail_cleanly()
    {
        var entries = ZipBuilder.Read(Fixtures.Path_("torch_layouts", "pytorch_model.bin"));
        var pickle = entries.Single(e => e.Name.EndsWith("data.pkl")).Data;
        var random = new Random(5678);
        int rejected = 0;
        for (int i = 0; i < Iterations * 5; i++)
        {
            var bytes = Mutate(random, pickle, 0, pickle.Length);
            try
            {
                new RestrictedUnpickler("fuzz.pkl", bytes).Load();
            }
            catch (CheckpointException)
            {
                rejected++;
            }
        }
        Assert.True(rejected > Iterations, $"only {rejected} mutants rejected");
    }

    [Fact]
    public void Mutated_torch_zips_fail_cleanly()
    {
        var original = File.ReadAllBytes(Fixtures.Path_("torch_layouts", "pytorch_model.bin"));
        using var temp = new TempFolder();
        string path = temp.File("mutant.bin");
        var random = new Random(91011);
        for (int i = 0; i < Iterations; i++)
        {
            // anywhere in the file: pickle, storages, local headers, central directory
            var bytes = Mutate(random, original, 0, original.Length);
            File.WriteAllBytes(path, bytes);
            try
            {
                using var folder = CheckpointFolder.Open(path);
                TouchAll(folder);
            }
            catch (CheckpointException e)
            {
                Assert.False(string.IsNullOrWhiteSpace(e.Problem));
            }
        }
    }
}

public class ConfigFuzzTests
{
    [Fact]
    public void Mutated_configs_fail_cleanly()
    {
        var original = File.ReadAllBytes(Fixtures.Path_("configs", "cumo-mixtral-8x7b.json"));
        var random = new Random(4242);
        const string alphabet = "{}[]\",:0123456789-.eE \\udDfFtn";
        for (int i = 0; i < 1000; i++)
        {
            var bytes = (byte[])original.Clone();
            for (int k = random.Next(1, 4); k > 0; k--)
                bytes[random.Next(bytes.Length)] = random.Next(2) == 0 ? (byte)alphabet[random.Next(alphabet.Length)] : (byte)random.Next(256);
            try
            {
                ConfigImporter.ImportSpec(System.Text.Encoding.UTF8.GetString(bytes));
            }
            catch (CheckpointException)
            {
            }
        }
    }
}
