using System.Text.Json;

namespace MoeCompiler.Serving.Tests;

/// <summary>The chat page in headless chromium: it loads, takes a picture, streams an answer, and draws its expert loads.</summary>
[Collection(TinyModelCollection.Name)]
public sealed class ChatPageTests(TinyModelFixture fixture)
{
    [ChromiumFact]
    public async Task The_page_streams_an_answer_about_a_picked_picture_and_draws_its_expert_load()
    {
        string chromium = HeadlessChromium.Find().Path ?? throw new InvalidOperationException("chromium is required (MOE_REQUIRE_CHROMIUM=1): " + HeadlessChromium.Find().Why);
        await using var harness = await ServerHarness.Start(fixture.Vision);
        // What the API answers for the same conversation, to compare with what the page shows.
        var expected = JsonDocument.Parse(await (await harness.Post(ServerHarness.Body(new
        {
            messages = new object[]
            {
                new { role = "user", content = new object[] { new { type = "image_url", image_url = new { url = fixture.PictureDataUrl } }, new { type = "text", text = "What is in this picture?" } } },
            },
            max_tokens = 16,
        }))).Content.ReadAsStringAsync()).RootElement;
        string expectedText = expected.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        int layers = expected.GetProperty("routing").GetProperty("layers").GetArrayLength();
        int experts = expected.GetProperty("routing").GetProperty("layers")[0].GetProperty("experts").GetInt32();

        await using var browser = await HeadlessChromium.Launch(chromium);
        await browser.Navigate(harness.Server.Address);
        await browser.WaitFor($"document.getElementById('model') && document.getElementById('model').textContent === '{TinyModelFixture.VisionVariant}'",
            "show the served model", TimeSpan.FromSeconds(30));

        // Pick the picture through the file input, as a user would.
        await browser.Evaluate($$"""
            (() => {
              const bytes = Uint8Array.from(atob('{{Convert.ToBase64String(fixture.Picture)}}'), c => c.charCodeAt(0));
              const transfer = new DataTransfer();
              transfer.items.add(new File([bytes], 'picture.png', { type: 'image/png' }));
              const input = document.getElementById('image');
              input.files = transfer.files;
              input.dispatchEvent(new Event('change'));
              return true;
            })()
            """);
        await browser.WaitFor("document.getElementById('preview').style.display === 'block'", "show the picked picture", TimeSpan.FromSeconds(10));

        // Count every change of the answer text, then ask.
        await browser.Evaluate("""
            (() => {
              window.answerUpdates = 0;
              new MutationObserver(records => { for (const r of records) if (r.target.classList && r.target.classList.contains('assistant')) window.answerUpdates++; })
                .observe(document.getElementById('messages'), { childList: true, subtree: true });
              document.getElementById('max-tokens').value = '16';
              document.getElementById('question').value = 'What is in this picture?';
              document.getElementById('send').click();
              return true;
            })()
            """);
        await browser.WaitFor("!!document.querySelector('#answer-0.done')", "finish the answer", TimeSpan.FromSeconds(60));

        Assert.Null(await browser.Evaluate("document.querySelector('.msg.error') && document.querySelector('.msg.error').textContent"));
        Assert.Equal(expectedText, (await browser.Evaluate("document.getElementById('answer-0').textContent"))!.GetValue<string>());
        int updates = (await browser.Evaluate("window.answerUpdates"))!.GetValue<int>();
        int pieces = expected.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        Assert.True(updates >= 3 && updates <= pieces, $"the answer arrived in {updates} updates for {pieces} tokens: not streamed");

        // The chart: one bar per expert, text and image, per MoE layer; the image bars show where image tokens went.
        await browser.WaitFor("!!document.getElementById('routing-svg')", "draw the expert-load chart", TimeSpan.FromSeconds(10));
        Assert.Equal(layers * experts * 2, (await browser.Evaluate("document.querySelectorAll('#routing-svg rect.bar').length"))!.GetValue<int>());
        double imageHeight = (await browser.Evaluate("[...document.querySelectorAll('#routing-svg rect.bar.image')].reduce((s, r) => s + parseFloat(r.getAttribute('height')), 0)"))!.GetValue<double>();
        Assert.True(imageHeight > 0, "no image-token bar has any height");
        Assert.Contains("prompt tokens", (await browser.Evaluate("document.getElementById('stats').textContent"))!.GetValue<string>());
    }
}
