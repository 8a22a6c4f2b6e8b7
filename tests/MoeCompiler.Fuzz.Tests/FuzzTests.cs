using Xunit.Abstractions;

namespace MoeCompiler.Fuzz.Tests;

/// <summary>
/// One seeded mutation run per parser. The default run is short (a few hundred inputs each, the whole project well
/// under a minute on two cores); MOE_SLOW_TESTS=1 runs 100 000 inputs per parser, MOE_FUZZ_INPUTS any count.
/// Failures name the saved input (under the temp folder's moe-fuzz-failures/). The runs share one collection, so
/// the memory watch of one is not disturbed by another.
/// </summary>
[Collection(nameof(FuzzTests))]
[CollectionDefinition(nameof(FuzzTests), DisableParallelization = true)]
public sealed class FuzzTests(ITestOutputHelper output)
{
    private const int ShortRun = 400;

    private void Run(Func<Harness> make, int seed)
    {
        var harness = make();
        var report = Fuzzer.Run(harness, Fuzzer.Inputs(ShortRun), seed);
        string line = $"fuzz {report.Parser}: {report.Inputs} inputs, {report.Accepted} accepted, {report.Rejected} rejected with documented errors, {report.Seconds:F1} s";
        output.WriteLine(line);
        Console.WriteLine(line);
        // a harness whose every input is rejected tests only the first check of its parser
        Assert.True(report.Accepted > 0 || report.Inputs < 50, $"{report.Parser}: no input was accepted");
        Assert.True(report.Rejected > 0 || report.Inputs < 50, $"{report.Parser}: no input was rejected");
    }

    [Fact] public void Safetensors() => Run(Harnesses.Safetensors, 101);
    [Fact] public void Sharded_index() => Run(Harnesses.ShardedIndex, 102);
    [Fact] public void Torch_bin_zip_and_pickle() => Run(Harnesses.TorchBin, 103);
    [Fact] public void Png() => Run(Harnesses.Png, 104);
    [Fact] public void Jpeg() => Run(Harnesses.Jpeg, 105);
    [Fact] public void Bmp() => Run(Harnesses.Bmp, 106);
    [Fact] public void Ppm() => Run(Harnesses.Ppm, 107);
    [Fact] public void Tiktoken() => Run(Harnesses.Tiktoken, 108);
    [Fact] public void Tokenizer_json() => Run(Harnesses.TokenizerJson, 109);
    [Fact] public void Tokenizer_model() => Run(Harnesses.SentencePieceModel, 110);
    [Fact] public void Vocab_and_merges() => Run(Harnesses.VocabAndMerges, 111);
    [Fact] public void Config_import() => Run(Harnesses.ConfigImport, 112);
    [Fact] public void Spec_parser() => Run(Harnesses.SpecParser, 113);

    [Fact]
    public void The_fuzzer_is_deterministic()
    {
        var seeds = new[] { "{\"a\": [1, 2, 3]}"u8.ToArray(), new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 } };
        byte[][] Draw(int seed)
        {
            var random = new Random(seed);
            return Enumerable.Range(0, 200).Select(i => Mutator.Mutate(random, seeds[i % 2], seeds)).ToArray();
        }
        Assert.Equal(Draw(7), Draw(7));
        Assert.NotEqual(Draw(7), Draw(8));
    }

    [Fact]
    public void An_undocumented_exception_fails_the_run_and_saves_the_input()
    {
        var harness = new Harness("self-test", ["seed"u8.ToArray()], (input, _) => throw new IndexOutOfRangeException(), typeof(FormatException));
        var e = Assert.ThrowsAny<Exception>(() => Fuzzer.Run(harness, 1, 1));
        Assert.Contains("IndexOutOfRangeException", e.Message);
        string saved = e.Message[(e.Message.LastIndexOf("saved in ", StringComparison.Ordinal) + 9)..].Trim();
        Assert.Equal("seed"u8.ToArray(), File.ReadAllBytes(saved));
        File.Delete(saved);
    }

    [Fact]
    public void A_hang_fails_the_run()
    {
        // the stuck thread is a background thread that only sleeps: it ends with the test process
        var harness = new Harness("self-test-hang", ["seed"u8.ToArray()], (input, _) => Thread.Sleep(Timeout.Infinite));
        var e = Assert.ThrowsAny<Exception>(() => Fuzzer.Run(harness, 1, 1));
        Assert.Contains("a hang", e.Message);
    }

    [Fact]
    public void A_large_allocation_fails_the_run()
    {
        var harness = new Harness("self-test-memory", ["seed"u8.ToArray()], (input, _) => GC.KeepAlive(new byte[(1 << 30) + 4096]));
        var e = Assert.ThrowsAny<Exception>(() => Fuzzer.Run(harness, 1, 1));
        Assert.Contains("MiB of managed memory", e.Message);
    }
}
