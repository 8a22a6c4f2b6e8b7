using System.Globalization;
using MoeCompiler.Imaging;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Tooling;

// Runs one image and prompt through a MoE variant and draws, for every MoE layer, how the text tokens and the
// image tokens were spread over the experts (MoE-LLaVA Figures 4 and 5), as routing.png and routing.svg.
// Usage:
//   dotnet run --project examples/RoutingPlot -- [variant] [checkpoint-folder] [image] [output-folder]
// Defaults: TinyPhiChat with seeded random weights and a generated picture, written to ./routing-plot.
// For the paper's picture use a real checkpoint, e.g. MoeLlavaStableLm4e /models/MoE-LLaVA-StableLM-1.6B-4e cat.jpg

string variantName = args.Length > 0 ? args[0] : TinyPhiChatConstants.Name;
var variant = ModelCatalog.Variants.FirstOrDefault(v => string.Equals(v.Name, variantName, StringComparison.OrdinalIgnoreCase));
if (variant is null)
{
    Console.Error.WriteLine($"unknown variant '{variantName}'; compiled variants: {string.Join(", ", ModelCatalog.Variants.Select(v => v.Name))}");
    return 2;
}
string outputFolder = args.Length > 3 ? args[3] : "routing-plot";
Directory.CreateDirectory(outputFolder);
string folder = args.Length > 1 ? args[1] : CreateRandomWeights(variant, outputFolder);
string image = args.Length > 2 ? args[2] : CreatePicture(outputFolder);

var model = variant.Load(folder, CpuBackend.Shared, null);
using var mapping = model as IDisposable;   // the model owns the memory-mapped checkpoint
var pipeline = new VisionLanguagePipeline(model, CpuBackend.Shared);
var answer = pipeline.Ask([image], "Describe the image in detail.", new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 16 } });

// Routing statistics cover every forward call of the answer: the prompt (text and image rows) and each new token.
Console.WriteLine($"{variant.Name}: {answer.Timings.PromptTokens} prompt tokens ({answer.Timings.ImageTokens} image), {answer.Timings.GeneratedTokens} generated");
foreach (var site in answer.Routing.Layers.GroupBy(l => l.Site))
{
    var layers = site.ToList();
    string title = $"{variant.Name} {site.Key} expert load";
    string png = Path.Combine(outputFolder, $"routing-{site.Key}.png"), svg = Path.Combine(outputFolder, $"routing-{site.Key}.svg");
    File.WriteAllBytes(png, PngEncoder.Encode(ExpertLoadChart.ToImage(title, layers)));
    File.WriteAllText(svg, ExpertLoadChart.ToSvg(title, layers));
    foreach (var layer in layers)
        Console.WriteLine($"  {layer.Site} layer {layer.Layer,2}  text {Shares(layer.TextShare)}  image {Shares(layer.ImageShare)}");
    Console.WriteLine($"  wrote {png} and {svg}");
}
return 0;

static string Shares(double[] shares) => string.Join(" ", shares.Select(s => s.ToString("0.00", CultureInfo.InvariantCulture)));

static string CreateRandomWeights(ModelCatalogEntry variant, string directory)
{
    string folder = Path.Combine(directory, variant.Name + "-random");
    string file = Path.Combine(folder, "model.safetensors");
    if (!File.Exists(file))
    {
        Directory.CreateDirectory(folder);
        RandomCheckpoint.Write(variant.Manifest, file, seed: 3);
    }
    return folder;
}

static string CreatePicture(string directory)
{
    // Four coloured quadrants, so the image tokens differ from one another.
    const int size = 64;
    var pixels = new byte[size * size * 3];
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++)
        {
            int i = (y * size + x) * 3, quadrant = (y / 32) * 2 + x / 32;
            pixels[i] = (byte)(quadrant * 70);
            pixels[i + 1] = (byte)(255 - quadrant * 60);
            pixels[i + 2] = (byte)(x * 4);
        }
    string path = Path.Combine(directory, "picture.png");
    File.WriteAllBytes(path, PngEncoder.Encode(new RgbImage(size, size, pixels)));
    return path;
}
