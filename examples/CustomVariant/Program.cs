using System.Globalization;
using MoeCompiler.Models;

// Everything printed here was compiled from specs/pocket-qwen-prmoe.json at build time.
var inv = CultureInfo.InvariantCulture;
Console.WriteLine($"{PocketQwenPrMoeConstants.DisplayName} ({PocketQwenPrMoeConstants.Name}, from {PocketQwenPrMoeConstants.SpecFile})");
Console.WriteLine($"  LLM      {PocketQwenPrMoeConstants.LlmFamily}: {PocketQwenPrMoeConstants.Layers} layers, width {PocketQwenPrMoeConstants.HiddenSize}, " +
                  $"{PocketQwenPrMoeConstants.Heads} heads of {PocketQwenPrMoeConstants.HeadDim}, FFN {PocketQwenPrMoeConstants.FfnSize} ({PocketQwenPrMoeConstants.FfnKind})");
Console.WriteLine($"  MoE      {PocketQwenPrMoeConstants.Experts} experts, top-{PocketQwenPrMoeConstants.TopK}, layers [{string.Join(", ", PocketQwenPrMoeConstants.MoeLayers.ToArray())}] " +
                  $"(map {PocketQwenPrMoeConstants.LayerMap}), second expert {PocketQwenPrMoeConstants.SecondExpert}, PR-MoE residual {PocketQwenPrMoeConstants.ResidualMoe}");
Console.WriteLine($"  Vision   {PocketQwenPrMoeConstants.VisionTower} {PocketQwenPrMoeConstants.ImageSize}px, {PocketQwenPrMoeConstants.VisionUsedLayers} of {PocketQwenPrMoeConstants.VisionLayers} layers, " +
                  $"{PocketQwenPrMoeConstants.ImageTokens} image tokens");
Console.WriteLine($"  Params   total {PocketQwenPrMoeConstants.TotalParameters.ToString("N0", inv)}, activated {PocketQwenPrMoeConstants.ActivatedParameters.ToString("N0", inv)}, " +
                  $"paper formula {PocketQwenPrMoeConstants.PaperTotalParameters.ToString("N0", inv)} / {PocketQwenPrMoeConstants.PaperActivatedParameters.ToString("N0", inv)}");
Console.WriteLine($"  Manifest {PocketQwenPrMoe.Manifest.Entries.Count} tensors, {PocketQwenPrMoe.Manifest.TotalParameters.ToString("N0", inv)} parameters");
Console.WriteLine($"  Catalog  {string.Join(", ", ModelCatalog.Variants.Select(v => v.Name))}");
return PocketQwenPrMoe.Manifest.TotalParameters == PocketQwenPrMoeConstants.TotalParameters ? 0 : 1;
