using System.Text.Json;
using Microsoft.Extensions.AI;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Serving;

/// <summary>An error answered in OpenAI's shape: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public sealed class OpenAiError(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    public void Write(Utf8JsonWriter json)
    {
        json.WriteStartObject();
        json.WriteStartObject("error");
        json.WriteString("message", Message);
        json.WriteString("type", Type);
        if (Param is null) json.WriteNull("param"); else json.WriteString("param", Param);
        if (Code is null) json.WriteNull("code"); else json.WriteString("code", Code);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    public static OpenAiError BadRequest(string message, string? param = null) => new(400, message, param: param);
}

/// <summary>A parsed <c>POST /v1/chat/completions</c> body, as chat messages and options for the IChatClient.</summary>
internal sealed record ChatCompletionRequest(IReadOnlyList<ChatMessage> Messages, ChatOptions Options, bool Stream, bool IncludeRouting)
{
    /// <summary>Reads the request body; every problem is an <see cref="OpenAiError"/> 400 naming the field.</summary>
    public static ChatCompletionRequest Parse(JsonElement root, string modelId, bool allowLocalFiles)
    {
        if (root.ValueKind != JsonValueKind.Object) throw OpenAiError.BadRequest("the request body must be a JSON object");
        if (root.TryGetProperty("model", out var model) && model.ValueKind != JsonValueKind.Null)
        {
            if (model.ValueKind != JsonValueKind.String) throw OpenAiError.BadRequest("'model' must be a string", "model");
            if (model.GetString() != modelId)
                throw new OpenAiError(404, $"The model '{model.GetString()}' does not exist; this server serves '{modelId}'", param: "model", code: "model_not_found");
        }
        if (!root.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array)
            throw OpenAiError.BadRequest("'messages' is required and must be an array", "messages");
        var list = new List<ChatMessage>();
        int index = 0;
        foreach (var message in messages.EnumerateArray()) list.Add(ParseMessage(message, index++, allowLocalFiles));
        if (list.Count == 0) throw OpenAiError.BadRequest("'messages' must not be empty", "messages");

        var options = new ChatOptions { ModelId = modelId };
        options.Temperature = Number(root, "temperature", 0, 2);
        options.TopP = Number(root, "top_p", 0, 1);
        if (options.TopP == 0) throw OpenAiError.BadRequest("'top_p' must be greater than 0", "top_p");
        options.TopK = Integer(root, "top_k", 0, int.MaxValue);
        options.MaxOutputTokens = Integer(root, "max_completion_tokens", 1, int.MaxValue) ?? Integer(root, "max_tokens", 1, int.MaxValue);
        if (root.TryGetProperty("seed", out var seed) && seed.ValueKind != JsonValueKind.Null)
        {
            if (seed.ValueKind != JsonValueKind.Number || !seed.TryGetInt64(out long value)) throw OpenAiError.BadRequest("'seed' must be an integer", "seed");
            options.Seed = value;
        }
        if (Integer(root, "n", 1, int.MaxValue) is > 1) throw OpenAiError.BadRequest("only n = 1 is supported", "n");
        options.StopSequences = Stops(root);
        bool stream = Flag(root, "stream");
        bool includeRouting = true;
        if (root.TryGetProperty("moe", out var moe) && moe.ValueKind == JsonValueKind.Object) includeRouting = !moe.TryGetProperty("routing", out var r) || r.ValueKind != JsonValueKind.False;
        return new ChatCompletionRequest(list, options, stream, includeRouting);
    }

    private static ChatMessage ParseMessage(JsonElement message, int index, bool allowLocalFiles)
    {
        string where = $"messages[{index}]";
        if (message.ValueKind != JsonValueKind.Object) throw OpenAiError.BadRequest($"{where} must be an object", where);
        if (!message.TryGetProperty("role", out var roleElement) || roleElement.ValueKind != JsonValueKind.String)
            throw OpenAiError.BadRequest($"{where}.role is required", $"{where}.role");
        var role = roleElement.GetString() switch
        {
            "system" or "developer" => ChatRole.System,
            "user" => ChatRole.User,
            "assistant" => ChatRole.Assistant,
            var other => throw OpenAiError.BadRequest($"{where}.role '{other}' is not supported: only system, user and assistant", $"{where}.role"),
        };
        var contents = new List<AIContent>();
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
            throw OpenAiError.BadRequest($"{where}.content is required", $"{where}.content");
        if (content.ValueKind == JsonValueKind.String)
        {
            contents.Add(new TextContent(content.GetString()));
        }
        else if (content.ValueKind == JsonValueKind.Array)
        {
            int p = 0;
            foreach (var part in content.EnumerateArray()) contents.Add(ParsePart(part, $"{where}.content[{p++}]", allowLocalFiles));
        }
        else
        {
            throw OpenAiError.BadRequest($"{where}.content must be a string or an array of parts", $"{where}.content");
        }
        return new ChatMessage(role, contents);
    }

    private static AIContent ParsePart(JsonElement part, string where, bool allowLocalFiles)
    {
        if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw OpenAiError.BadRequest($"{where} must be an object with a 'type'", where);
        switch (type.GetString())
        {
            case "text":
                if (!part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                    throw OpenAiError.BadRequest($"{where}.text must be a string", $"{where}.text");
                return new TextContent(text.GetString());
            case "image_url":
                if (!part.TryGetProperty("image_url", out var image)) throw OpenAiError.BadRequest($"{where}.image_url is required", $"{where}.image_url");
                var url = image.ValueKind == JsonValueKind.String ? image
                    : image.ValueKind == JsonValueKind.Object && image.TryGetProperty("url", out var u) ? u : default;
                if (url.ValueKind != JsonValueKind.String) throw OpenAiError.BadRequest($"{where}.image_url.url must be a string", $"{where}.image_url.url");
                return ImageContent(url.GetString()!, $"{where}.image_url.url", allowLocalFiles);
            case var other:
                throw OpenAiError.BadRequest($"{where}: content parts of type '{other}' are not supported: only 'text' and 'image_url'", $"{where}.type");
        }
    }

    private static AIContent ImageContent(string url, string param, bool allowLocalFiles)
    {
        if (url.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
        {
            DataContent data;
            try
            {
                data = new DataContent(url);
            }
            catch (Exception e) when (e is FormatException or ArgumentException or UriFormatException)
            {
                throw OpenAiError.BadRequest($"{param} is not a valid base64 data: URL ({e.Message})", param);
            }
            if (!data.HasTopLevelMediaType("image")) throw OpenAiError.BadRequest($"{param} has media type {data.MediaType}, not an image", param);
            return data;
        }
        bool isFile = url.StartsWith("file:", StringComparison.OrdinalIgnoreCase) || Path.IsPathRooted(url);
        if (isFile && allowLocalFiles)
        {
            var uri = url.StartsWith("file:", StringComparison.OrdinalIgnoreCase) ? new Uri(url) : new Uri(Path.GetFullPath(url));
            return new UriContent(uri, "image/*");
        }
        throw OpenAiError.BadRequest(isFile
            ? $"{param}: local image files are not enabled on this server (moe serve --allow-local-files); send the image as a data: URL"
            : $"{param}: only data: URLs are accepted (this server downloads nothing)", param);
    }

    private static float? Number(JsonElement root, string name, double min, double max)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double d) || d < min || d > max)
            throw OpenAiError.BadRequest($"'{name}' must be a number between {min} and {max}", name);
        return (float)d;
    }

    private static int? Integer(JsonElement root, string name, int min, int max)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int i) || i < min || i > max)
            throw OpenAiError.BadRequest($"'{name}' must be an integer ≥ {min}", name);
        return i;
    }

    private static bool Flag(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return false;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw OpenAiError.BadRequest($"'{name}' must be true or false", name),
        };
    }

    private static List<string>? Stops(JsonElement root)
    {
        if (!root.TryGetProperty("stop", out var stop) || stop.ValueKind == JsonValueKind.Null) return null;
        var stops = new List<string>();
        if (stop.ValueKind == JsonValueKind.String) stops.Add(stop.GetString()!);
        else if (stop.ValueKind == JsonValueKind.Array)
            foreach (var s in stop.EnumerateArray())
                stops.Add(s.ValueKind == JsonValueKind.String ? s.GetString()! : throw OpenAiError.BadRequest("'stop' must be a string or an array of strings", "stop"));
        else throw OpenAiError.BadRequest("'stop' must be a string or an array of strings", "stop");
        if (stops.Any(string.IsNullOrEmpty)) throw OpenAiError.BadRequest("'stop' strings must not be empty", "stop");
        if (stops.Count > 4) throw OpenAiError.BadRequest("'stop' takes at most 4 strings", "stop");
        return stops;
    }
}

/// <summary>Writes the response bodies: completions, stream chunks, usage and the routing extension.</summary>
internal static class OpenAiWriter
{
    private static readonly JsonSerializerOptions s_camel = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public static string FinishReason(ChatFinishReason? reason) => reason == ChatFinishReason.Length ? "length" : "stop";

    public static void Usage(Utf8JsonWriter json, UsageDetails? usage)
    {
        json.WriteStartObject("usage");
        json.WriteNumber("prompt_tokens", usage?.InputTokenCount ?? 0);
        json.WriteNumber("completion_tokens", usage?.OutputTokenCount ?? 0);
        json.WriteNumber("total_tokens", usage?.TotalTokenCount ?? 0);
        json.WriteEndObject();
    }

    /// <summary>The extension field "routing": per MoE layer the tokens and shares of each expert, text and image
    /// apart (the camelCase JSON of <see cref="RoutingStatistics"/>).</summary>
    public static void Routing(Utf8JsonWriter json, AdditionalPropertiesDictionary? extras)
    {
        if (extras?.TryGetValue(MoeChatClient.RoutingKey, out object? value) != true || value is not RoutingStatistics routing) return;
        json.WritePropertyName("routing");
        JsonSerializer.Serialize(json, routing, s_camel);
    }

    public static void Timings(Utf8JsonWriter json, AdditionalPropertiesDictionary? extras)
    {
        if (extras?.TryGetValue(MoeChatClient.TimingsKey, out object? value) != true || value is not GenerationTimings t) return;
        json.WriteStartObject("timings");
        json.WriteNumber("time_to_first_token_ms", Math.Round(t.TimeToFirstToken.TotalMilliseconds, 1));
        json.WriteNumber("decode_ms", Math.Round(t.Decode.TotalMilliseconds, 1));
        json.WriteNumber("decode_tokens_per_second", Math.Round(t.DecodeTokensPerSecond, 2));
        json.WriteNumber("image_tokens", t.ImageTokens);
        json.WriteEndObject();
    }
}
