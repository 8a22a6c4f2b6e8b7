// ImageBench: decode + CLIP/SigLIP preprocessing of a 12-megapixel JPEG, with Debian's djpeg (process timing) and
// Pillow (a python subprocess timing its own decode + pad + resize + normalise) measured in the same run; then the
// same picture as a progressive JPEG (decode only). Medians and minima over the runs are printed: on a busy machine
// the minimum is the steadier number.
//
//   dotnet run -c Release --project benchmarks/ImageBench [-- --image photo.jpg] [--runs 7] [--python /usr/bin/python3]
using System.Diagnostics;
using System.Globalization;
using MoeCompiler.Imaging;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

string? imagePath = null;
int runs = 7;
string python = "/usr/bin/python3";
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--image": imagePath = args[++i]; break;
        case "--runs": runs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--python": python = args[++i]; break;
        default:
            Console.Error.WriteLine($"unknown argument {args[i]}; use --image PATH, --runs N, --python PATH");
            return 2;
    }
}

string workDir = Path.Combine(Path.GetTempPath(), $"moe-imagebench-{Environment.ProcessId}");
Directory.CreateDirectory(workDir);
try
{
    string? progressivePath = null;
    if (imagePath is null)
    {
        (imagePath, progressivePath) = MakeTestJpegs(workDir);
    }
    var bytes = File.ReadAllBytes(imagePath);
    var probe = ImageDecoder.Decode(bytes);
    Console.WriteLine($"image: {imagePath} ({probe.Width}x{probe.Height}, {bytes.Length / 1024} KiB), {runs} runs, median; {Environment.ProcessorCount} cores");

    var clip = VisionPreprocessing.Clip();
    var siglip = VisionPreprocessing.Siglip();
    var oursDecode = Measure(runs, () => ImageDecoder.Decode(bytes));
    var singleThread = new ImageDecodeOptions { MaxDegreeOfParallelism = 1 };
    var clipSingle = clip with { MaxDegreeOfParallelism = 1 };
    var oursDecodeSingle = Measure(runs, () => ImageDecoder.Decode(bytes, singleThread));
    var oursClipSingle = Measure(runs, () => clipSingle.Apply(ImageDecoder.Decode(bytes, singleThread)));
    var oursClip = Measure(runs, () => clip.Apply(ImageDecoder.Decode(bytes)));
    var oursSiglip = Measure(runs, () => siglip.Apply(ImageDecoder.Decode(bytes)));
    var djpeg = TryMeasure(runs, () => RunProcess("djpeg", $"-outfile /dev/null \"{imagePath}\""));
    var pillow = PillowTimings(python, imagePath, runs);

    Timing? oursProgressive = null, djpegProgressive = null;
    (Timing Decode, Timing Clip, Timing Siglip)? pillowProgressive = null;
    if (progressivePath is not null)
    {
        var progressiveBytes = File.ReadAllBytes(progressivePath);
        oursProgressive = Measure(runs, () => ImageDecoder.Decode(progressiveBytes));
        djpegProgressive = TryMeasure(runs, () => RunProcess("djpeg", $"-outfile /dev/null \"{progressivePath}\""));
        pillowProgressive = PillowTimings(python, progressivePath, runs);
    }

    Console.WriteLine();
    Console.WriteLine($"{"measurement (wall clock)",-48}{"median ms",10}{"min ms",10}");
    Row("MoeCompiler decode", oursDecode);
    Row("MoeCompiler decode + CLIP-336 preprocess", oursClip);
    Row("MoeCompiler decode + SigLIP-384 preprocess", oursSiglip);
    Row("MoeCompiler decode, 1 thread", oursDecodeSingle);
    Row("MoeCompiler decode + CLIP-336, 1 thread", oursClipSingle);
    Row("djpeg decode (process, output /dev/null)", djpeg);
    Row("Pillow decode (open + convert RGB)", pillow?.Decode);
    Row("Pillow decode + CLIP-336 preprocess", pillow?.Clip);
    Row("Pillow decode + SigLIP-384 preprocess", pillow?.Siglip);
    if (progressivePath is not null)
    {
        Row("MoeCompiler decode, progressive", oursProgressive);
        Row("djpeg decode, progressive", djpegProgressive);
        Row("Pillow decode, progressive", pillowProgressive?.Decode);
    }
    Console.WriteLine();
    Console.WriteLine($"{"ratio",-48}{"median",10}{"min",10}");
    Ratio("decode: MoeCompiler / djpeg", oursDecode, djpeg);
    Ratio("decode: MoeCompiler / Pillow", oursDecode, pillow?.Decode);
    Ratio("decode+CLIP: MoeCompiler / Pillow", oursClip, pillow?.Clip);
    Ratio("decode+SigLIP: MoeCompiler / Pillow", oursSiglip, pillow?.Siglip);
    Ratio("decode, 1 thread: MoeCompiler / Pillow", oursDecodeSingle, pillow?.Decode);
    Ratio("decode+CLIP, 1 thread: MoeCompiler / Pillow", oursClipSingle, pillow?.Clip);
    if (progressivePath is not null)
    {
        Ratio("progressive decode: MoeCompiler / djpeg", oursProgressive!.Value, djpegProgressive);
        Ratio("progressive decode: MoeCompiler / Pillow", oursProgressive!.Value, pillowProgressive?.Decode);
    }
    Console.WriteLine("(ratio < 1 means MoeCompiler is faster)");
    return 0;
}
finally
{
    Directory.Delete(workDir, recursive: true);
}

static string Format(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);

static void Row(string name, Timing? t) =>
    Console.WriteLine(t is Timing v ? $"{name,-48}{Format(v.Median, "F1"),10}{Format(v.Min, "F1"),10}" : $"{name,-48}{"n/a",10}{"n/a",10}");

static void Ratio(string name, Timing ours, Timing? peer) =>
    Console.WriteLine(peer is Timing p
        ? $"{name,-48}{Format(ours.Median / p.Median, "F2"),10}{Format(ours.Min / p.Min, "F2"),10}"
        : $"{name,-48}{"n/a",10}{"n/a",10}");

static Timing Measure(int runs, Action action)
{
    action(); // warm-up (JIT, caches)
    var times = new double[runs];
    for (int i = 0; i < runs; i++)
    {
        var watch = Stopwatch.StartNew();
        action();
        times[i] = watch.Elapsed.TotalMilliseconds;
    }
    Array.Sort(times);
    return new Timing(times[runs / 2], times[0]);
}

static Timing? TryMeasure(int runs, Action action)
{
    try
    {
        return Measure(runs, action);
    }
    catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
    {
        Console.Error.WriteLine($"peer unavailable: {e.Message}");
        return null;
    }
}

static string RunProcess(string file, string arguments)
{
    var info = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
    using var process = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {file}");
    string output = process.StandardOutput.ReadToEnd();
    string error = process.StandardError.ReadToEnd();
    process.WaitForExit();
    if (process.ExitCode != 0) throw new InvalidOperationException($"{file} exited with {process.ExitCode}: {error}");
    return output;
}

static (Timing Decode, Timing Clip, Timing Siglip)? PillowTimings(string python, string imagePath, int runs)
{
    const string script = """
import sys, time
import numpy as np
from PIL import Image
path, runs = sys.argv[1], int(sys.argv[2])
def expand2square(im, bg):
    w, h = im.size
    if w == h: return im
    s = max(w, h); out = Image.new(im.mode, (s, s), bg); out.paste(im, ((s - w) // 2, (s - h) // 2)); return out
def prep(im, mean, std, size, clip):
    im = expand2square(im, tuple(int(x * 255) for x in mean))
    if clip:
        w, h = im.size; s = min(w, h)
        im = im.resize((size, int(size * h / s)) if w <= h else (int(size * w / s), size), Image.BICUBIC)
        a = np.asarray(im); t, l = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2; a = a[t:t + size, l:l + size]
    else:
        a = np.asarray(im.resize((size, size), Image.BICUBIC))
    x = (a.astype(np.float64) * (1 / 255)).astype(np.float32)
    return ((x - np.array(mean, np.float32)) / np.array(std, np.float32)).transpose(2, 0, 1).copy()
CM, CS = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
def measure(f):
    f(); ts = []
    for _ in range(runs):
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    return "%f %f" % (ts[runs // 2], ts[0])
dec = lambda: Image.open(path).convert("RGB")
print(measure(dec), measure(lambda: prep(dec(), CM, CS, 336, True)), measure(lambda: prep(dec(), [0.5] * 3, [0.5] * 3, 384, False)))
""";
    string scriptPath = Path.Combine(Path.GetTempPath(), $"moe-imagebench-{Environment.ProcessId}.py");
    File.WriteAllText(scriptPath, script);
    try
    {
        var parts = RunProcess(python, $"\"{scriptPath}\" \"{imagePath}\" {runs}").Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => double.Parse(p, CultureInfo.InvariantCulture)).ToArray();
        return (new Timing(parts[0], parts[1]), new Timing(parts[2], parts[3]), new Timing(parts[4], parts[5]));
    }
    catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException or FormatException or IndexOutOfRangeException)
    {
        Console.Error.WriteLine($"Pillow unavailable: {e.Message}");
        return null;
    }
    finally
    {
        File.Delete(scriptPath);
    }
}

// A 4000x3000 photo-like picture (smooth gradients, shapes, seeded noise), encoded by cjpeg at quality 90, 4:2:0,
// baseline and progressive.
static (string Baseline, string Progressive) MakeTestJpegs(string workDir)
{
    const int width = 4000, height = 3000;
    var random = new Random(12);
    var header = System.Text.Encoding.ASCII.GetBytes($"P6\n{width} {height}\n255\n");
    var pixels = new byte[width * height * 3];
    for (int y = 0; y < height; y++)
    {
        for (int x = 0; x < width; x++)
        {
            double r = 128 + 100 * Math.Sin(x / 400.0) * Math.Cos(y / 300.0);
            double g = 255.0 * x / width, b = 255.0 * y / height;
            double dx = x - 2400, dy = y - 1200;
            if (dx * dx + dy * dy < 700 * 700) { r = 230; g = 40 + (x & 31); b = 60; }
            int n = random.Next(-10, 11);
            int o = (y * width + x) * 3;
            pixels[o] = (byte)Math.Clamp(r + n, 0, 255);
            pixels[o + 1] = (byte)Math.Clamp(g + n, 0, 255);
            pixels[o + 2] = (byte)Math.Clamp(b + n, 0, 255);
        }
    }
    string ppm = Path.Combine(workDir, "bench.ppm"), jpeg = Path.Combine(workDir, "bench_12mp.jpg");
    string progressive = Path.Combine(workDir, "bench_12mp_progressive.jpg");
    using (var f = File.Create(ppm))
    {
        f.Write(header);
        f.Write(pixels);
    }
    RunProcess("cjpeg", $"-quality 90 -outfile \"{jpeg}\" \"{ppm}\"");
    RunProcess("cjpeg", $"-quality 90 -progressive -outfile \"{progressive}\" \"{ppm}\"");
    return (jpeg, progressive);
}

internal readonly record struct Timing(double Median, double Min);
