using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace MoeCompiler.Serving.Tests;

/// <summary>The OpenAI-compatible endpoints over loopback, against the in-process IChatClient they are built on.</summary>
[Collection(TinyModelCollection.Name)]
public sealed class ServerTests(TinyModelFixture fixture)
{
    private object ImageQuestion(string question, int maxTokens, bool stream = false) => new
    {
        model = TinyModelFixture.VisionVariant,
        messages = new object[]
        {
            new { role = "user", content = new object[] { new { type = "image_url", image_url = new { url = fixture.PictureDataUrl } }, new { type = "text", text = question } } },
        },
        max_tokens = maxTokens,
        stream,
    };

    [Fact]
    public async Task Models_and_health_describe_the_served_variant()
    {
        await using var harness = await ServerHarness.Start(fixture.Vision);
        var models = JsonDocument.Parse(await harness.Http.GetStringAsync("v1/models")).RootElement;
        Assert.Equal("list", models.GetProperty("object").GetString());
        var model = Assert.Single(models.GetProperty("data").EnumerateArray());
        Assert.Equal(TinyModelFixture.VisionVariant, model.GetProperty("id").GetString());
        Assert.Equal("model", model.GetProperty("object").GetString());
        var one = JsonDocument.Parse(await harness.Http.GetStringAsync("v1/models/" + TinyModelFixture.VisionVariant)).RootElement;
        Assert.Equal(TinyModelFixture.VisionVariant, one.GetProperty("id").GetString());
        await ServerHarness.Error(await harness.Http.GetAsync("v1/models/gpt-4"), 404);

        var health = JsonDocument.Parse(await harness.Http.GetStringAsync("health")).RootElement;
        Assert.Equal("ok", health.GetProperty("status").GetString());
        Assert.True(health.GetProperty("vision").GetBoolean());
        Assert.Equal(0, health.GetProperty("active").GetInt32());
        Assert.StartsWith("http://127.0.0.1:", harness.Server.Address.ToString());
    }

    [Fact]
    public async Task A_completion_answers_as_the_chat_client_with_usage_and_routing()
    {
        using var direct = new MoeChatClient(fixture.Vision);
        var expected = await direct.GetResponseAsync(
            [new ChatMessage(ChatRole.User, [new DataContent(fixture.Picture, "image/png"), new TextContent("What is it?")])],
            new ChatOptions { MaxOutputTokens = 9 });
        await using var harness = await ServerHarness.Start(fixture.Vision);

        var response = await harness.Post(ServerHarness.Body(ImageQuestion("What is it?", 9)));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var root = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("chat.completion", root.GetProperty("object").GetString());
        Assert.StartsWith("chatcmpl-", root.GetProperty("id").GetString());
        var choice = Assert.Single(root.GetProperty("choices").EnumerateArray());
        Assert.Equal(expected.Text, choice.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.Equal(expected.FinishReason == ChatFinishReason.Length ? "length" : "stop", choice.GetProperty("finish_reason").GetString());
        var usage = root.GetProperty("usage");
        Assert.Equal(expected.Usage!.InputTokenCount, usage.GetProperty("prompt_tokens").GetInt64());
        Assert.Equal(expected.Usage.OutputTokenCount, usage.GetProperty("completion_tokens").GetInt64());
        Assert.Equal(expected.Usage.TotalTokenCount, usage.GetProperty("total_tokens").GetInt64());
        var layers = root.GetProperty("routing").GetProperty("layers");
        var expectedRouting = (MoeCompiler.Runtime.Modules.RoutingStatistics)expected.AdditionalProperties![MoeChatClient.RoutingKey]!;
        Assert.Equal(expectedRouting.Layers.Count, layers.GetArrayLength());
        var layer = layers[0];
        Assert.Equal(expectedRouting.Layers[0].ImageTokens, layer.GetProperty("imageTokens").GetInt64());
        Assert.Equal(1.0, layer.GetProperty("textShare").EnumerateArray().Sum(e => e.GetDouble()), 6);
        Assert.Equal(1.0, layer.GetProperty("imageShare").EnumerateArray().Sum(e => e.GetDouble()), 6);
    }

    [Fact]
    public async Task A_streamed_completion_sends_the_same_text_as_server_sent_events()
    {
        await using var harness = await ServerHarness.Start(fixture.Vision);
        var whole = JsonDocument.Parse(await (await harness.Post(ServerHarness.Body(ImageQuestion("Describe it.", 10)))).Content.ReadAsStringAsync()).RootElement;

        var response = await harness.Post(ServerHarness.Body(ImageQuestion("Describe it.", 10, stream: true)));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = await ServerHarness.Events(response);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events.SkipLast(1).Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.True(chunks.Count >= 3);
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        string text = string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var t) ? t.GetString() : ""));
        Assert.Equal(whole.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(), text);
        var last = chunks[^1];
        Assert.Equal(whole.GetProperty("choices")[0].GetProperty("finish_reason").GetString(), last.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.All(chunks.SkipLast(1), c => Assert.Equal(JsonValueKind.Null, c.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind));
        Assert.Equal(whole.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), last.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(whole.GetProperty("routing").GetRawText(), last.GetProperty("routing").GetRawText());
    }

    [Fact]
    public async Task Sampling_settings_and_stop_strings_arrive_at_the_model()
    {
        await using var harness = await ServerHarness.Start(fixture.Vision);
        async Task<string> Ask(object body)
        {
            var response = await harness.Post(ServerHarness.Body(body));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        }
        var messages = new object[] { new { role = "user", content = "Tell me a story." } };
        string greedy = await Ask(new { messages, max_tokens = 12 });
        string sampled = await Ask(new { messages, max_tokens = 12, temperature = 1.5, top_p = 0.95, seed = 3 });
        Assert.Equal(sampled, await Ask(new { messages, max_tokens = 12, temperature = 1.5, top_p = 0.95, seed = 3 }));
        Assert.NotEqual(greedy, sampled);
        string stop = greedy.Substring(greedy.Length / 2, 3);
        Assert.Equal(greedy[..greedy.IndexOf(stop, StringComparison.Ordinal)], await Ask(new { messages, max_tokens = 12, stop }));
        Assert.Equal(greedy[..greedy.IndexOf(stop, StringComparison.Ordinal)], await Ask(new { messages, max_tokens = 12, stop = new[] { stop, "never-there" } }));
    }

    public static TheoryData<string, int, string?> BadRequests => new()
    {
        { "{not json", 400, null },
        { "[]", 400, null },
        { """{"messages": "hi"}""", 400, "messages" },
        { """{"messages": []}""", 400, "messages" },
        { """{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}""", 404, "model" },
        { """{"messages": [{"role": "bot", "content": "hi"}]}""", 400, "messages[0].role" },
        { """{"messages": [{"role": "user"}]}""", 400, "messages[0].content" },
        { """{"messages": [{"role": "user", "content": 5}]}""", 400, "messages[0].content" },
        { """{"messages": [{"role": "assistant", "content": "hi"}]}""", 400, null },
        { """{"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}""", 400, "messages[0].content[0].type" },
        { """{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}""", 400, "messages[0].content[0].image_url.url" },
        { """{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]}""", 400, "messages[0].content[0].image_url.url" },
        { """{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}]}]}""", 400, "messages[0].content[0].image_url.url" },
        { """{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}]}""", 400, "messages[0].content[0].image_url.url" },
        { """{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8gd29ybGQ="}}]}]}""", 400, null },
        { """{"messages": [{"role": "user", "content": "hi"}], "temperature": 7}""", 400, "temperature" },
        { """{"messages": [{"role": "user", "content": "hi"}], "top_p": 0}""", 400, "top_p" },
        { """{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}""", 400, "max_tokens" },
        { """{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}""", 400, null },
        { """{"messages": [{"role": "user", "content": "hi"}], "seed": "x"}""", 400, "seed" },
        { """{"messages": [{"role": "user", "content": "hi"}], "stop": [1]}""", 400, "stop" },
        { """{"messages": [{"role": "user", "content": "hi"}], "n": 2}""", 400, "n" },
        { """{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}""", 400, "stream" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_requests_get_OpenAIs_error_shape_and_status(string body, int status, string? param)
    {
        await using var harness = await ServerHarness.Start(fixture.Vision);
        var error = await ServerHarness.Error(await harness.Post(body), status);
        if (param is not null) Assert.Equal(param, error.GetProperty("param").GetString());
        // the same request streamed fails the same way, before any event
        if (body.StartsWith('{') && body.EndsWith('}') && !body.Contains("\"stream\""))
            await ServerHarness.Error(await harness.Post(body[..^1] + ", \"stream\": true}"), status);
        var health = JsonDocument.Parse(await harness.Http.GetStringAsync("health")).RootElement;
        Assert.Equal(0, health.GetProperty("failed").GetInt32());
    }

    [Fact]
    public async Task Unknown_routes_are_404_in_the_error_shape()
    {
        await using var harness = await ServerHarness.Start(fixture.Vision);
        await ServerHarness.Error(await harness.Http.GetAsync("v1/completions"), 404);
        await ServerHarness.Error(await harness.Http.GetAsync("v1/chat/completions"), 404);
    }

    [Fact]
    public async Task A_body_over_the_limit_is_413()
    {
        await using var harness = await ServerHarness.Start(fixture.Vision, new MoeServerOptions { MaxRequestBodyBytes = 1000 });
        string big = ServerHarness.Body(ImageQuestion("What is it?", 4));
        Assert.True(big.Length > 1000);
        // Expect: 100-continue, so the refused body is never sent (a server closing on unread bytes resets the
        // connection, and the client might see the reset before the answer).
        var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(big, Encoding.UTF8, "application/json") };
        request.Headers.ExpectContinue = true;
        var error = await ServerHarness.Error(await harness.Http.SendAsync(request), 413);
        Assert.Equal("request_too_large", error.GetProperty("code").GetString());
        // a body under the limit still goes through
        Assert.Equal(HttpStatusCode.OK, (await harness.Post(ServerHarness.Body(new { messages = new object[] { new { role = "user", content = "hi" } }, max_tokens = 2 }))).StatusCode);
    }

    [Fact]
    public async Task Images_over_the_pixel_limit_are_400()
    {
        await using var harness = await ServerHarness.Start(fixture.Vision, clientOptions: new MoeChatClientOptions { MaxImagePixels = 64 });
        var error = await ServerHarness.Error(await harness.Post(ServerHarness.Body(ImageQuestion("What is it?", 4))), 400);
        Assert.Contains("pixels", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task Local_image_paths_work_only_when_enabled()
    {
        string body = ServerHarness.Body(new
        {
            messages = new object[] { new { role = "user", content = new object[] { new { type = "image_url", image_url = new { url = fixture.PicturePath } }, new { type = "text", text = "What is it?" } } } },
            max_tokens = 6,
        });
        await using (var closed = await ServerHarness.Start(fixture.Vision))
            Assert.Contains("--allow-local-files", (await ServerHarness.Error(await closed.Post(body), 400)).GetProperty("message").GetString());
        await using var open = await ServerHarness.Start(fixture.Vision, clientOptions: new MoeChatClientOptions { AllowLocalFiles = true });
        var byPath = await open.Post(body);
        Assert.Equal(HttpStatusCode.OK, byPath.StatusCode);
        var byData = await open.Post(ServerHarness.Body(ImageQuestion("What is it?", 6)));
        Assert.Equal(
            JsonDocument.Parse(await byData.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(),
            JsonDocument.Parse(await byPath.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    [Fact]
    public async Task Requests_beyond_the_concurrency_and_queue_limits_are_429_and_the_rest_complete()
    {
        var backend = new GateBackend();
        var client = new MoeChatClient(fixture.Vision, backend, null);
        await using var harness = await ServerHarness.Start(client, new MoeServerOptions { MaxConcurrentRequests = 1, MaxQueuedRequests = 1 });
        string body = ServerHarness.Body(new { messages = new object[] { new { role = "user", content = "hi" } }, max_tokens = 4 });

        var first = harness.Post(body);
        await backend.FirstStarted.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var second = harness.Post(body);
        // the second waits for admission; wait until the server counts it
        for (int i = 0; i < 300 && JsonDocument.Parse(await harness.Http.GetStringAsync("health")).RootElement.GetProperty("waiting").GetInt32() < 1; i++)
            await Task.Delay(20);
        var third = await harness.Post(body);
        var error = await ServerHarness.Error(third, 429);
        Assert.Equal("queue_full", error.GetProperty("code").GetString());
        Assert.Equal(1, backend.Started);

        backend.Release();
        Assert.Equal(HttpStatusCode.OK, (await first).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await second).StatusCode);
        var health = JsonDocument.Parse(await harness.Http.GetStringAsync("health")).RootElement;
        Assert.Equal(2, health.GetProperty("served").GetInt32());
        Assert.Equal(1, health.GetProperty("rejected").GetInt32());
    }

    [Fact]
    public async Task A_full_backend_is_503()
    {
        var client = new MoeChatClient(fixture.Vision, new GateBackend { Throw = new GenerationBackendFullException("the scheduler's queue is full") }, null);
        await using var harness = await ServerHarness.Start(client);
        var error = await ServerHarness.Error(await harness.Post(ServerHarness.Body(new { messages = new object[] { new { role = "user", content = "hi" } } })), 503);
        Assert.Equal("overloaded", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_client_that_disconnects_cancels_its_generation()
    {
        var backend = new GateBackend();
        var client = new MoeChatClient(fixture.Vision, backend, null);
        await using var harness = await ServerHarness.Start(client);
        using (var streaming = new HttpClient { BaseAddress = harness.Server.Address })
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            {
                Content = new StringContent(ServerHarness.Body(new { messages = new object[] { new { role = "user", content = "hi" } }, stream = true }), Encoding.UTF8, "application/json"),
            };
            using var response = await streaming.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            string? line = await reader.ReadLineAsync();
            Assert.Contains("\"first\"", line);
        } // the client goes away mid-answer

        Assert.True(await backend.Cancelled.Task.WaitAsync(TimeSpan.FromSeconds(30)));
        JsonElement health = default;
        for (int i = 0; i < 300; i++)
        {
            health = JsonDocument.Parse(await harness.Http.GetStringAsync("health")).RootElement;
            if (health.GetProperty("cancelled").GetInt32() == 1) break;
            await Task.Delay(20);
        }
        Assert.Equal(1, health.GetProperty("cancelled").GetInt32());
        Assert.Equal(0, health.GetProperty("active").GetInt32());
    }

    [Fact]
    public async Task The_chat_page_is_served_self_contained()
    {
        await using var harness = await ServerHarness.Start(fixture.Vision);
        var response = await harness.Http.GetAsync("/");
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        string html = await response.Content.ReadAsStringAsync();
        Assert.Contains("/v1/chat/completions", html);
        Assert.Contains("routing-chart", html);
        // no CDN: nothing is loaded from another origin
        Assert.DoesNotContain("src=\"http", html);
        Assert.DoesNotContain("href=\"http", html);
        Assert.DoesNotContain("@import", html);
    }
}
