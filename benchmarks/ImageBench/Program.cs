// ImageBench: decode + CLIP/SigLIP preprocessing of a 12-megapixel JPEG, with Debian's djpeg (process timing) and
// Pillow (a python subprocess timing its own decode + pad + resize + normalise) measured in the same run.
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
    imagePath ??= MakeTestJpeg(workDir);
    var bytes = File.ReadAllBytes(imagePath);
    var probe = ImageDecoder.Decode(bytes);
    Console.WriteLine($"image: {imagePath} ({probe.Width}x{probe.Height}, {bytes.Length / 1024} KiB), {runs} runs, median; {Environment.ProcessorCount} cores");

    var clip = VisionPreprocessing.Clip();
    var siglip = VisionPreprocessing.Siglip();
    double oursDecode = Median(runs, () => ImageDecoder.Decode(bytes));
    double oursClip = Median(runs, () => clip.Apply(ImageDecoder.Decode(bytes)));
    double oursSiglip = Median(runs, () => siglip.Apply(ImageDecoder.Decode(bytes)));

    double? djpeg = TryMedian(runs, () => RunProcess("djpeg", $"-outfile /dev/null \"{imagePath}\""));
    var pillow = PillowTimings(python, imagePath, runs);

    Console.WriteLine();
    Console.WriteLine($"{"measurement",-44}{"ms",10}");
    Row("MoeCompiler decode", oursDecode);
    Row("MoeCompiler decode + CLIP-336 preprocess", oursClip);
    Row("MoeCompiler decode + SigLIP-384 preprocess", oursSiglip);
    Row("djpeg decode (process, output /dev/null)", djpeg);
    Row("Pillow decode (open + convert RGB)", pillow?.Decode);
    Row("Pillow decode + CLIP-336 preprocess", pillow?.Clip);
    Row("Pillow decode + SigLIP-384 preprocess", pillow?.Siglip);
    Console.WriteLine();
    Ratio("decode: MoeCompiler / djpeg", oursDecode, djpeg);
    Ratio("decode: MoeCompiler / Pillow", oursDecode, pillow?.Decode);
    Ratio("decode+CLIP: MoeCompiler / Pillow", oursClip, pillow?.Clip);
    Ratio("decode+SigLIP: MoeCompiler / Pillow", oursSiglip, pillow?.Siglip);
    Console.WriteLine("(ratio < 1 means MoeCompiler is faster)");
    return 0;
}
finally
{
    Directory.Delete(workDir, recursive: true);
}

static void Row(string name, double? ms) =>
    Console.WriteLine($"{name,-44}{(ms is double v ? v.ToString("F1", CultureInfo.InvariantCulture) : "n/a"),10}");

static void Ratio(string name, double ours, double? peer) =>
    Console.WriteLine($"{name,-44}{(peer is double p ? (ours / p).ToString("F2", CultureInfo.InvariantCulture) : "n/a"),10}");

static double Median(int runs, Action action)
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
    return times[runs / 2];
}

static double? TryMedian(int runs, Action action)
{
    try
    {
        return Median(runs, action);
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

static (double Decode, double Clip, double Siglip)? PillowTimings(string python, string imagePath, int runs)
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
def median(f):
    f(); ts = []
    for _ in range(runs):
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1000)
    return sorted(ts)[runs // 2]
dec = lambda: Image.open(path).convert("RGB")
print(median(dec), median(lambda: prep(dec(), CM, CS, 336, True)), median(lambda: prep(dec(), [0.5] * 3, [0.5] * 3, 384, False)))
""";
    string scriptPath = Path.Combine(Path.GetTempPath(), $"moe-imagebench-{Environment.ProcessId}.py");
    File.WriteAllText(scriptPath, script);
    try
    {
        var parts = RunProcess(python, $"\"{scriptPath}\" \"{imagePath}\" {runs}").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (double.Parse(parts[0], CultureInfo.InvariantCulture), double.Parse(parts[1], CultureInfo.InvariantCulture),
            double.Parse(parts[2], CultureInfo.InvariantCulture));
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

// A 4000x3000 photo-like picture (smooth gradients, shapes, seeded noise), encoded by cjpeg at quality 90, 4:2:0.
static string MakeTestJpeg(string workDir)
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
    using (var f = File.Create(ppm))
    {
        f.Write(header);
        f.Write(pixels);
    }
    RunProcess("cjpeg", $"-quality 90 -outfile \"{jpeg}\" \"{ppm}\"");
    return jpeg;
}
