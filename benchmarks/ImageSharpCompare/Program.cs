// ImageSharpCompare: SixLabors.ImageSharp 2.1.13 against Pillow (the reference the vision towers were trained with)
// and MoeCompiler.Imaging, on PNGs and baseline/progressive JPEGs written by Pillow (make_images.py). Prints, per
// picture and decoder, the largest absolute difference from Pillow's RGB per channel, the mean absolute difference,
// and decode times (median and minimum over the runs; the machine is shared, so timings are noisy).
//
//   /usr/bin/python3 benchmarks/ImageSharpCompare/make_images.py /tmp/isc 7
//   dotnet run -c Release --project benchmarks/ImageSharpCompare -- /tmp/isc 7
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using MoeCompiler.Imaging;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
if (args.Length < 1)
{
    Console.Error.WriteLine("usage: ImageSharpCompare DIR [RUNS]   (DIR written by make_images.py)");
    return 2;
}
string dir = args[0];
int runs = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 7;
var pillowTimes = File.ReadAllLines(Path.Combine(dir, "pillow-times.txt"))
    .Select(line => line.Split(' '))
    .ToDictionary(f => f[0], f => (Median: double.Parse(f[1]), Min: double.Parse(f[2])));

var oneThread = new ImageDecodeOptions { MaxDegreeOfParallelism = 1 };
Console.WriteLine($"{runs} runs per decoder, {Environment.ProcessorCount} cores; times in ms (median / min), noisy: shared machine");
Console.WriteLine($"{"picture",-22}{"decoder",-20}{"max |d| R,G,B",-16}{"mean |d|",10}{"median",9}{"min",9}");
foreach (var (name, median) in pillowTimes.Select(kv => (kv.Key, kv.Value)))
{
    string file = Directory.GetFiles(dir, name + ".*").Single(f => f.EndsWith(".png") || f.EndsWith(".jpg"));
    byte[] data = File.ReadAllBytes(file);
    byte[] reference = File.ReadAllBytes(Path.Combine(dir, name + ".pillow.rgb"));

    Report(name, "Pillow 9.4 (python)", reference, reference, median);
    Report(name, "MoeCompiler.Imaging", reference, DecodeOurs(data, null), Time(() => DecodeOurs(data, null)));
    Report(name, "  same, 1 thread", reference, DecodeOurs(data, oneThread), Time(() => DecodeOurs(data, oneThread)));
    Report(name, "ImageSharp 2.1.13", reference, DecodeImageSharp(data), Time(() => DecodeImageSharp(data)));
}
return 0;

static byte[] DecodeOurs(byte[] data, ImageDecodeOptions? options) => ImageDecoder.Decode(data, options).Pixels;

static byte[] DecodeImageSharp(byte[] data)
{
    using var image = Image.Load<Rgb24>(data);
    var pixels = new byte[image.Width * image.Height * 3];
    image.CopyPixelDataTo(MemoryMarshal.Cast<byte, Rgb24>(pixels.AsSpan()));
    return pixels;
}

(double Median, double Min) Time(Func<byte[]> decode)
{
    decode(); // warm-up: JIT and caches
    var samples = new double[runs];
    for (int i = 0; i < runs; i++)
    {
        var watch = Stopwatch.StartNew();
        decode();
        samples[i] = watch.Elapsed.TotalMilliseconds;
    }
    Array.Sort(samples);
    return (samples[runs / 2], samples[0]);
}

static void Report(string picture, string decoder, byte[] reference, byte[] pixels, (double Median, double Min) time)
{
    string agreement;
    if (pixels.Length != reference.Length)
    {
        agreement = $"size differs: {pixels.Length} vs {reference.Length} bytes";
        Console.WriteLine($"{picture,-22}{decoder,-20}{agreement}");
        return;
    }
    var max = new int[3];
    long sum = 0;
    for (int i = 0; i < pixels.Length; i++)
    {
        int d = Math.Abs(pixels[i] - reference[i]);
        max[i % 3] = Math.Max(max[i % 3], d);
        sum += d;
    }
    agreement = $"{max[0]},{max[1]},{max[2]}";
    Console.WriteLine($"{picture,-22}{decoder,-20}{agreement,-16}{(double)sum / pixels.Length,10:F4}{time.Median,9:F1}{time.Min,9:F1}");
}
