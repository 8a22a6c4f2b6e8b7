using System.Globalization;
using Microsoft.Extensions.AI;
using MoeCompiler.Imaging;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Serving;
using MoeCompiler.Tooling;

// TinyPhiChat (compiled from modelspecs/tiny-phi-chat.json) behind Microsoft.Extensions.AI's IChatClient. Usage:
//   dotnet run --project examples/ChatClientApp -- [checkpoint-folder] [image]
// Without a folder it writes seeded random weights first: the answers are then noise, but every step really runs.
// The same client is what `moe serve` serves over HTTP (docs/serving.md).

string workDirectory = Path.Combine(Path.GetTempPath(), "moecompiler-chatclientapp");
string folder = args.Length > 0 ? args[0] : CreateRandomWeights(workDirectory);
byte[] picture = args.Length > 1 ? File.ReadAllBytes(args[1]) : CreatePicture();

using var model = TinyPhiChat.Open(folder);
// Thread-safe: several conversations may call one client at once; they share the one loaded model.
IChatClient client = new MoeChatClient(model);

// A picture travels as DataContent; the variant's prompt template puts it in the first user turn.
var conversation = new List<ChatMessage>
{
    new(ChatRole.User, [new DataContent(picture, "image/png"), new TextContent("What is in this picture?")]),
};
var options = new ChatOptions { MaxOutputTokens = 24, Temperature = 0 };

Console.Write("assistant> ");
var updates = new List<ChatResponseUpdate>();
await foreach (var update in client.GetStreamingResponseAsync(conversation, options))
{
    Console.Write(update.Text);
    updates.Add(update);
}
Console.WriteLine();
var first = updates.ToChatResponse();
Console.WriteLine($"  {first.Usage?.InputTokenCount} prompt tokens, {first.Usage?.OutputTokenCount} generated, finish: {first.FinishReason}");

// The answer's expert load (per MoE layer, the share of text and image tokens each expert took) rides along.
if (updates[^1].AdditionalProperties?[MoeChatClient.RoutingKey] is RoutingStatistics routing)
    foreach (var layer in routing.Layers)
        Console.WriteLine($"  layer {layer.Layer}: text {Shares(layer.TextShare)} | image {Shares(layer.ImageShare)}");

// A second turn: the history is just the message list.
conversation.AddRange(first.Messages);
conversation.Add(new ChatMessage(ChatRole.User, "And which colours does it have?"));
var second = await client.GetResponseAsync(conversation, options);
Console.WriteLine($"assistant> {second.Text}");
return 0;

static string Shares(double[] shares) => string.Join(" ", shares.Select(s => s.ToString("P0", CultureInfo.InvariantCulture)));

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

static byte[] CreatePicture()
{
    // A 96×64 picture: a blue-to-green gradient with a red square.
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
    return PngEncoder.Encode(new RgbImage(width, height, pixels));
}
