using System.Globalization;
using MoeCompiler.Imaging;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Tooling;

// This project references MoeCompiler only as NuGet packages. PackagedPhiMoe below exists nowhere but in
// modelspecs/packaged-phi-moe.json: the MoeCompiler.Generators analyzer package compiled it at this build.
var inv = CultureInfo.InvariantCulture;
Console.WriteLine($"{PackagedPhiMoeConstants.DisplayName} (from {PackagedPhiMoeConstants.SpecFile})");
Console.WriteLine($"  LLM     {PackagedPhiMoeConstants.LlmFamily}, {PackagedPhiMoeConstants.Layers} layers, width {PackagedPhiMoeConstants.HiddenSize}, " +
                  $"vocabulary {PackagedPhiMoeConstants.VocabSize}, layer map {PackagedPhiMoeConstants.LayerMap}");
Console.WriteLine($"  MoE     {PackagedPhiMoeConstants.Experts} experts, top-{PackagedPhiMoeConstants.TopK}, routing {PackagedPhiMoeConstants.Routing}");
Console.WriteLine($"  Vision  {PackagedPhiMoeConstants.VisionTower} {PackagedPhiMoeConstants.ImageSize}px, {PackagedPhiMoeConstants.ImageTokens} image tokens");
Console.WriteLine($"  Params  total {PackagedPhiMoeConstants.TotalParameters.ToString("N0", inv)}, activated {PackagedPhiMoeConstants.ActivatedParameters.ToString("N0", inv)}; " +
                  $"manifest {PackagedPhiMoe.Manifest.Entries.Count} tensors");
Console.WriteLine($"  Catalog {string.Join(", ", ModelCatalog.Variants.Select(v => v.Name))}");

// One run on seeded random weights: the answer is noise, the machinery is real.
string folder = Path.Combine(Path.GetTempPath(), "moecompiler-package-consumer");
Directory.CreateDirectory(folder);
string weights = Path.Combine(folder, "model.safetensors");
RandomCheckpoint.Write(PackagedPhiMoe.Manifest, weights, seed: 11, overwrite: true);
string image = Path.Combine(folder, "grey.png");
File.WriteAllBytes(image, PngEncoder.Encode(RgbImage.Filled(40, 30, 128, 128, 128)));

using var model = PackagedPhiMoe.Load(folder, CpuBackend.Shared);
var pipeline = new VisionLanguagePipeline(model, CpuBackend.Shared);   // the GPT-2 tokenizer comes with the package
var answer = pipeline.Ask([image], "What is in this picture?", new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 8 } });
Console.WriteLine($"  Run     {answer.PromptIds.Length} prompt ids + {answer.Timings.ImageTokens} image rows -> {answer.TokenIds.Length} tokens: \"{answer.Text.Trim()}\"");
Console.WriteLine($"  Routing {answer.Routing.Layers.Count} MoE layers recorded");

bool ok = PackagedPhiMoe.Manifest.TotalParameters == PackagedPhiMoeConstants.TotalParameters
          && answer.TokenIds.Length > 0 && answer.Routing.Layers.Count == PackagedPhiMoeConstants.Layers;
Console.WriteLine(ok ? "PackageConsumer: OK" : "PackageConsumer: FAILED");
return ok ? 0 : 1;
