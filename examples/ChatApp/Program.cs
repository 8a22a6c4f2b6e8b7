using System.Globalization;
using MoeCompiler.Imaging;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Tooling;

// Chat about a picture with TinyPhiChat, a variant compiled from modelspecs/tiny-phi-chat.json into
// MoeCompiler.Models. Usage:
//   dotnet run --project examples/ChatApp -- [checkpoint-folder] [image]
// Without a folder it writes seeded random weights first: the answers are then noise, but every step really runs
// (image preprocessing, CLIP tower, projector, MoE language model with its KV cache, tokenizer, sampler).
// Type a question per line; an empty line or end of input quits.

string workDirectory = Path.Combine(Path.GetTempPath(), "moecompiler-chatapp");
string folder = args.Length > 0 ? args[0] : CreateRandomWeights(workDirectory);
string image = args.Length > 1 ? args[1] : CreatePicture(workDirectory);

// The catalog lists every compiled variant; the typed class is the variant itself.
var entry = ModelCatalog.Variants.Single(v => v.Name == TinyPhiChatConstants.Name);
Console.WriteLine($"{entry.DisplayName}: {entry.ActivatedParameters.ToString("N0", CultureInfo.InvariantCulture)} of " +
                  $"{entry.TotalParameters.ToString("N0", CultureInfo.InvariantCulture)} parameters active per token, layers {entry.LayerMap}");

// Open checks config.json and the folder's tokenizer files (when present) against the variant, binds the weights
// (a folder, a file, or a repository id ORG/NAME from the Hugging Face hub cache) and builds the pipeline.
using var model = TinyPhiChat.Open(folder);
Console.WriteLine($"tokenizer: {model.TokenizerSource}; vision tower: {model.VisionTowerSource}");
var history = new List<(string User, string Assistant)>();
var options = new GenerationOptions { MaxNewTokens = 32 };   // greedy by default; set Sampling for temperature / top-p

Console.WriteLine($"Talking about {image}. Ask a question (empty line to quit).");
while (true)
{
    Console.Write("you> ");
    string? question = Console.ReadLine();
    if (string.IsNullOrWhiteSpace(question)) break;

    Console.Write("assistant> ");
    var answer = model.Ask([image], question, new AskOptions { Generation = options, History = history.ToArray() },
        onText: text => Console.Write(text));
    Console.WriteLine();
    Console.WriteLine($"  ({answer.Timings.GeneratedTokens} tokens, {answer.Timings.DecodeTokensPerSecond.ToString("0.0", CultureInfo.InvariantCulture)} tokens/s, stopped: {answer.StopReason})");
    history.Add((question, answer.Text.Trim()));
}
return 0;

static string CreateRandomWeights(string directory)
{
    string folder = Path.Combine(directory, "TinyPhiChat-seed7");
    string file = Path.Combine(folder, "model.safetensors");
    if (!File.Exists(file))
    {
        Directory.CreateDirectory(folder);
        RandomCheckpoint.Write(TinyPhiChat.Manifest, file, seed: 7);
        Console.WriteLine($"Wrote random weights to {file}");
    }
    return folder;
}

static string CreatePicture(string directory)
{
    // A 96×64 picture: a blue-to-green gradient with a red square, saved as PNG.
    const int width = 96, height = 64;
    var pixels = new byte[width * height * 3];
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
        {
            int i = (y * width + x) * 3;
            bool square = x is >= 36 and < 60 && y is >= 20 and < 44;
            pixels[i] = square ? (byte)220 : (byte)20;
            pixels[i + 1] = square ? (byte)30 : (byte)(x * 255 / width);
            pixels[i + 2] = square ? (byte)30 : (byte)(255 - y * 255 / height);
        }
    Directory.CreateDirectory(directory);
    string path = Path.Combine(directory, "picture.png");
    File.WriteAllBytes(path, PngEncoder.Encode(new RgbImage(width, height, pixels)));
    return path;
}
