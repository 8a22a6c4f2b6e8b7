using Microsoft.Extensions.AI;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Serving.Tests;

/// <summary>The IChatClient against the pipeline's own Ask: same template, same image preprocessing, same tokens.</summary>
[Collection(TinyModelCollection.Name)]
public sealed class ChatClientTests(TinyModelFixture fixture)
{
    private static readonly GenerationOptions Twelve = new() { MaxNewTokens = 12 };

    private static ChatMessage UserWithPicture(TinyModelFixture f, string text) =>
        new(ChatRole.User, [new DataContent(f.Picture, "image/png"), new TextContent(text)]);

    [Fact]
    public async Task An_image_question_answers_as_Ask_does_with_the_same_file()
    {
        var expected = fixture.Vision.Ask([fixture.PicturePath], "What is in the picture?", new AskOptions { Generation = Twelve });
        using var client = new MoeChatClient(fixture.Vision);

        var response = await client.GetResponseAsync([UserWithPicture(fixture, "What is in the picture?")], new ChatOptions { MaxOutputTokens = 12 });

        Assert.Equal(expected.Text, response.Text);
        var answer = Assert.IsType<VisionLanguageAnswer>(response.RawRepresentation);
        Assert.Equal(expected.TokenIds, answer.TokenIds);
        Assert.Equal(expected.PromptIds, answer.PromptIds);
        Assert.Equal(expected.Timings.PromptTokens, response.Usage!.InputTokenCount);
        Assert.Equal(expected.TokenIds.Length, (int)response.Usage.OutputTokenCount!);
        Assert.Equal(TinyModelFixture.VisionVariant, response.ModelId);
        var routing = Assert.IsType<RoutingStatistics>(response.AdditionalProperties![MoeChatClient.RoutingKey]);
        Assert.Equal(expected.Routing.Layers.Select(l => l.ImageAssignments.Sum()), routing.Layers.Select(l => l.ImageAssignments.Sum()));
        Assert.All(routing.Layers, l => Assert.True(l.ImageTokens > 0));
    }

    [Fact]
    public async Task Earlier_turns_and_a_system_prompt_become_the_templates_history()
    {
        var options = new AskOptions { Generation = Twelve, History = [("What is this?", "A test pattern.")], System = "Answer briefly." };
        var expected = fixture.Vision.Ask([fixture.PicturePath], "Which colours?", options);
        using var client = new MoeChatClient(fixture.Vision);

        var response = await client.GetResponseAsync(
        [
            new ChatMessage(ChatRole.System, "Answer briefly."),
            UserWithPicture(fixture, "What is this?"),
            new ChatMessage(ChatRole.Assistant, "A test pattern."),
            new ChatMessage(ChatRole.User, "Which colours?"),
        ], new ChatOptions { MaxOutputTokens = 12 });

        var answer = Assert.IsType<VisionLanguageAnswer>(response.RawRepresentation);
        Assert.Equal(expected.Prompt, answer.Prompt);
        Assert.Equal(expected.TokenIds, answer.TokenIds);
    }

    [Fact]
    public async Task Streaming_gives_the_same_text_piece_by_piece_and_usage_and_routing_last()
    {
        using var client = new MoeChatClient(fixture.Vision);
        var messages = new[] { UserWithPicture(fixture, "Describe it.") };
        var whole = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 10 });

        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(messages, new ChatOptions { MaxOutputTokens = 10 }))
            updates.Add(update);

        Assert.True(updates.Count >= 3, $"expected several updates, got {updates.Count}");
        Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
        var last = updates[^1];
        Assert.Equal(whole.FinishReason, last.FinishReason);
        var usage = Assert.Single(last.Contents.OfType<UsageContent>()).Details;
        Assert.Equal(whole.Usage!.OutputTokenCount, usage.OutputTokenCount);
        Assert.IsType<RoutingStatistics>(last.AdditionalProperties![MoeChatClient.RoutingKey]);
        Assert.All(updates.SkipLast(1), u => Assert.Null(u.FinishReason));
    }

    [Fact]
    public async Task Chat_options_set_the_token_limit_stop_sequences_and_a_repeatable_seed()
    {
        using var client = new MoeChatClient(fixture.Vision);
        var messages = new[] { new ChatMessage(ChatRole.User, "Tell me a story.") };

        var three = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 3 });
        Assert.Equal(3, (int)three.Usage!.OutputTokenCount!);
        Assert.Equal(ChatFinishReason.Length, three.FinishReason);

        // A stop sequence taken from the greedy answer cuts it there.
        var greedy = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 12 });
        Assert.True(greedy.Text.Length > 6, greedy.Text);
        string stop = greedy.Text.Substring(greedy.Text.Length / 2, 3);
        var stopped = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 12, StopSequences = [stop] });
        Assert.Equal(greedy.Text[..greedy.Text.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);

        var sampling = new ChatOptions { MaxOutputTokens = 12, Temperature = 1.5f, TopP = 0.95f, Seed = 11 };
        var a = await client.GetResponseAsync(messages, sampling);
        var b = await client.GetResponseAsync(messages, sampling);
        var c = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 12, Temperature = 1.5f, TopP = 0.95f, Seed = 12 });
        Assert.Equal(a.Text, b.Text);
        Assert.NotEqual(a.Text, c.Text);
        Assert.NotEqual(greedy.Text, a.Text);
    }

    public static TheoryData<string> BadConversations => new() { "assistant-last", "assistant-first", "tool", "http-image", "file-image", "audio" };

    [Theory]
    [MemberData(nameof(BadConversations))]
    public async Task A_conversation_the_template_cannot_take_is_a_ModelInputException(string kind)
    {
        using var client = new MoeChatClient(fixture.Vision);
        ChatMessage[] messages = kind switch
        {
            "assistant-last" => [new(ChatRole.User, "hi"), new(ChatRole.Assistant, "hello")],
            "assistant-first" => [new(ChatRole.Assistant, "hello"), new(ChatRole.User, "hi")],
            "tool" => [new(ChatRole.Tool, "{}"), new(ChatRole.User, "hi")],
            "http-image" => [new(ChatRole.User, [new UriContent("https://example.com/cat.png", "image/png"), new TextContent("hi")])],
            "file-image" => [new(ChatRole.User, [new UriContent(new Uri(fixture.PicturePath), "image/png"), new TextContent("hi")])],
            _ => [new(ChatRole.User, [new DataContent(new byte[] { 1, 2, 3 }, "audio/wav"), new TextContent("hi")])],
        };
        var error = await Assert.ThrowsAsync<ModelInputException>(() => client.GetResponseAsync(messages));
        Assert.False(string.IsNullOrWhiteSpace(error.Message));
    }

    [Fact]
    public async Task Local_files_are_read_only_when_allowed_and_answer_as_the_same_bytes()
    {
        using var client = new MoeChatClient(fixture.Vision, new MoeChatClientOptions { AllowLocalFiles = true });
        var byFile = await client.GetResponseAsync(
            [new ChatMessage(ChatRole.User, [new UriContent(new Uri(fixture.PicturePath), "image/png"), new TextContent("What is this?")])],
            new ChatOptions { MaxOutputTokens = 8 });
        var byBytes = await client.GetResponseAsync([UserWithPicture(fixture, "What is this?")], new ChatOptions { MaxOutputTokens = 8 });
        Assert.Equal(byBytes.Text, byFile.Text);
    }

    [Fact]
    public async Task Images_beyond_the_pixel_limit_and_broken_images_are_refused_before_generation()
    {
        using var client = new MoeChatClient(fixture.Vision, new MoeChatClientOptions { MaxImagePixels = 100 });
        await Assert.ThrowsAsync<MoeCompiler.Imaging.ImageDecodingException>(() => client.GetResponseAsync([UserWithPicture(fixture, "hi")]));
        using var normal = new MoeChatClient(fixture.Vision);
        var broken = new ChatMessage(ChatRole.User, [new DataContent(fixture.Picture.AsSpan(0, 40).ToArray(), "image/png"), new TextContent("hi")]);
        await Assert.ThrowsAsync<MoeCompiler.Imaging.ImageDecodingException>(() => normal.GetResponseAsync([broken]));
    }

    [Fact]
    public async Task A_text_only_variant_chats_and_refuses_images()
    {
        using var client = new MoeChatClient(fixture.Text);
        var expected = fixture.Text.Ask([], "Hello there", new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 6 } });
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello there")], new ChatOptions { MaxOutputTokens = 6 });
        Assert.Equal(expected.Text, response.Text);
        var error = await Assert.ThrowsAsync<ModelInputException>(() => client.GetResponseAsync([UserWithPicture(fixture, "hi")]));
        Assert.Contains("text-only", error.Message);
    }

    [Fact]
    public async Task Out_of_range_settings_are_ModelInputExceptions()
    {
        using var client = new MoeChatClient(fixture.Vision, new MoeChatClientOptions { MaxOutputTokensLimit = 50 });
        var messages = new[] { new ChatMessage(ChatRole.User, "hi") };
        await Assert.ThrowsAsync<ModelInputException>(() => client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 51 }));
        await Assert.ThrowsAsync<ModelInputException>(() => client.GetResponseAsync(messages, new ChatOptions { Temperature = -1 }));
        await Assert.ThrowsAsync<ModelInputException>(() => client.GetResponseAsync(messages, new ChatOptions { TopP = 0 }));
    }

    [Fact]
    public async Task Cancellation_stops_the_generation()
    {
        using var client = new MoeChatClient(fixture.Vision);
        using var cancel = new CancellationTokenSource();
        int pieces = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Count to a thousand.")],
                new ChatOptions { MaxOutputTokens = 1000 }, cancel.Token))
                if (++pieces == 2) cancel.Cancel();
        });
        Assert.Equal(2, pieces);
        // The model is free again: the next call is answered.
        var after = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], new ChatOptions { MaxOutputTokens = 2 });
        Assert.Equal(2, (int)after.Usage!.OutputTokenCount!);
    }

    [Fact]
    public void The_client_describes_itself_and_its_model()
    {
        using var client = new MoeChatClient(fixture.Vision, new MoeChatClientOptions { ModelId = "tiny" });
        Assert.Equal("tiny", client.GetService<ChatClientMetadata>()!.DefaultModelId);
        Assert.Same(fixture.Vision, client.GetService<LoadedModel>());
        Assert.Same(client, client.GetService<IChatClient>());
    }
}
