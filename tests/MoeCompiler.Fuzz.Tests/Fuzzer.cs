using System.Globalization;
using System.Text;

namespace MoeCompiler.Fuzz.Tests;

/// <summary>One parser under test: its seeds, how one input is fed to it, and the exception types it documents.</summary>
/// <param name="Run">Feeds one input to the parser; <c>folder</c> is a scratch folder of this harness.</param>
internal sealed record Harness(string Name, IReadOnlyList<byte[]> Seeds, Action<byte[], string> Run, params Type[] Documented);

/// <summary>What one fuzz run did.</summary>
internal sealed record FuzzReport(string Parser, int Inputs, int Accepted, int Rejected, double Seconds);

/// <summary>
/// A seeded, deterministic mutation fuzzer. Every input runs under a watch: an exception that is not one of the
/// harness's documented types, a run longer than <see cref="HangLimit"/>, or more than <see cref="MemoryLimit"/>
/// bytes allocated (managed, or anonymous resident memory for native buffers) fails the run, and the input is
/// saved to a file whose path the failure message gives.
/// </summary>
internal static class Fuzzer
{
    public static readonly TimeSpan HangLimit = TimeSpan.FromSeconds(5);
    public const long MemoryLimit = 1L << 30;

    public static bool Slow => Environment.GetEnvironmentVariable("MOE_SLOW_TESTS") == "1";

    /// <summary>Inputs per parser: MOE_FUZZ_INPUTS if set, else 100 000 with MOE_SLOW_TESTS=1, else the short count.</summary>
    public static int Inputs(int shortRun) =>
        int.TryParse(Environment.GetEnvironmentVariable("MOE_FUZZ_INPUTS"), CultureInfo.InvariantCulture, out int n) ? n
        : Slow ? 100_000 : shortRun;

    public static string FailureFolder => Path.Combine(Path.GetTempPath(), "moe-fuzz-failures");

    public static FuzzReport Run(Harness harness, int inputs, int seed)
    {
        string folder = Path.Combine(Path.GetTempPath(), $"moe-fuzz-{harness.Name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            var random = new Random(seed);
            var watch = System.Diagnostics.Stopwatch.StartNew();
            int accepted = 0, rejected = 0;
            GC.Collect();
            long residentBaseline = AnonymousResidentBytes();
            for (int i = 0; i < inputs; i++)
            {
                // the unmutated seeds first: each must be accepted or documented-rejected like any input
                byte[] input = i < harness.Seeds.Count ? harness.Seeds[i] : Mutator.Mutate(random, harness.Seeds[random.Next(harness.Seeds.Count)], harness.Seeds);
                if (RunOne(harness, input, folder, i, ref residentBaseline)) accepted++; else rejected++;
            }
            return new FuzzReport(harness.Name, inputs, accepted, rejected, watch.Elapsed.TotalSeconds);
        }
        finally
        {
            try { Directory.Delete(folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>True when the parser accepted the input, false when it refused it with a documented exception.</summary>
    private static bool RunOne(Harness harness, byte[] input, string folder, int index, ref long residentBaseline)
    {
        Exception? error = null;
        long allocated = 0;
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try { harness.Run(input, folder); }
            catch (Exception e) { error = e; }
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }, maxStackSize: 16 << 20) { IsBackground = true };
        thread.Start();
        if (!thread.Join(HangLimit))
            Fail(harness, input, index, $"ran longer than {HangLimit.TotalSeconds} s (a hang)");
        if (allocated > MemoryLimit)
            Fail(harness, input, index, $"allocated {allocated >> 20} MiB of managed memory (limit {MemoryLimit >> 20} MiB)");
        long resident = AnonymousResidentBytes();
        if (resident - residentBaseline > MemoryLimit)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            resident = AnonymousResidentBytes();
            if (resident - residentBaseline > MemoryLimit)
                Fail(harness, input, index, $"left anonymous resident memory {(resident - residentBaseline) >> 20} MiB above where the run started");
            residentBaseline = Math.Min(residentBaseline, resident);
        }
        if (error is null) return true;
        if (harness.Documented.Any(t => t.IsInstanceOfType(error))) return false;
        Fail(harness, input, index, $"threw {error.GetType().FullName}, not one of its documented errors ({string.Join(", ", harness.Documented.Select(t => t.Name))}):\n{error}");
        return false;
    }

    private static void Fail(Harness harness, byte[] input, int index, string problem)
    {
        Directory.CreateDirectory(FailureFolder);
        string saved = Path.Combine(FailureFolder, $"{harness.Name}-{index}-{Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(input))[..12]}.input");
        File.WriteAllBytes(saved, input);
        throw new Xunit.Sdk.XunitException($"{harness.Name} input {index} {problem}\nthe input is saved in {saved}");
    }

    private static long AnonymousResidentBytes()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
                return long.Parse(line[8..].Trim()[..^3].Trim(), CultureInfo.InvariantCulture) * 1024;
        return 0;
    }
}

/// <summary>Byte-level mutations plus the values that break parsers: boundary integers, long digit strings, JSON tokens.</summary>
internal static class Mutator
{
    private static readonly byte[][] Tokens = new[]
    {
        "0", "-1", "1", "255", "256", "65535", "65536", "2147483647", "2147483648", "4294967295", "4294967296",
        "9223372036854775807", "99999999999999999999", "1e308", "-0", "null", "true", "[]", "{}", "\"\"", "[[]]", "\"a\"",
        "\\u0000", "\\ud800", "..", "/", "../", "\n", " ", ",", ":", "(((((((((((((((((((((", "+*+*+*",
    }.Select(s => Encoding.UTF8.GetBytes(s)).ToArray();

    private static readonly long[] Integers = { 0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, long.MaxValue, 1L << 32, 1L << 40 };

    public static byte[] Mutate(Random random, byte[] seed, IReadOnlyList<byte[]> seeds)
    {
        var bytes = new List<byte>(seed);
        int edits = 1 + random.Next(4);
        for (int e = 0; e < edits; e++)
        {
            if (bytes.Count == 0) bytes.Add((byte)random.Next(256));
            int at = random.Next(bytes.Count);
            switch (random.Next(11))
            {
                case 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 1: bytes[at] = (byte)random.Next(256); break;
                case 2: bytes[at] = (byte)(random.Next(4) switch { 0 => 0, 1 => 0xFF, 2 => 0x7F, _ => 0x80 }); break;
                case 3: bytes.RemoveRange(at, Math.Min(bytes.Count - at, 1 + random.Next(16))); break;
                case 4:
                    {
                        int length = Math.Min(bytes.Count - at, 1 + random.Next(64));
                        bytes.InsertRange(random.Next(bytes.Count), bytes.GetRange(at, length));
                        break;
                    }
                case 5:
                    {
                        long v = Integers[random.Next(Integers.Length)];
                        var raw = BitConverter.GetBytes(v).AsSpan(0, random.Next(2) == 0 ? 4 : 8).ToArray();
                        if (random.Next(2) == 0) Array.Reverse(raw); // big-endian formats (PNG, JPEG)
                        Overwrite(bytes, at, raw);
                        break;
                    }
                case 6: case 7:
                    {
                        // a token in place of the run of digits or letters at this point (JSON and text formats)
                        int end = at;
                        while (end < bytes.Count && end - at < 24 && (char.IsAsciiLetterOrDigit((char)bytes[end]) || bytes[end] is (byte)'-' or (byte)'.')) end++;
                        bytes.RemoveRange(at, end - at);
                        bytes.InsertRange(at, Tokens[random.Next(Tokens.Length)]);
                        break;
                    }
                case 8: bytes.RemoveRange(at, bytes.Count - at); break; // truncate
                case 9:
                    {
                        byte[] other = seeds[random.Next(seeds.Count)];
                        if (other.Length == 0) break;
                        int from = random.Next(other.Length);
                        Overwrite(bytes, at, other.AsSpan(from, Math.Min(other.Length - from, 1 + random.Next(256))).ToArray());
                        break;
                    }
                default:
                    {
                        int length = Math.Min(bytes.Count - at, 1 + random.Next(8));
                        var run = bytes.GetRange(at, length);
                        int copies = 1 + random.Next(64);
                        for (int c = 0; c < copies; c++) bytes.InsertRange(at, run);
                        break;
                    }
            }
        }
        return bytes.ToArray();
    }

    private static void Overwrite(List<byte> bytes, int at, byte[] value)
    {
        for (int i = 0; i < value.Length; i++)
        {
            if (at + i < bytes.Count) bytes[at + i] = value[i];
            else bytes.Add(value[i]);
        }
    }
}
