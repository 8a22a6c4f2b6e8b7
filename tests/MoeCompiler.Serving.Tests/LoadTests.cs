using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Xunit.Abstractions;

namespace MoeCompiler.Serving.Tests;

/// <summary>
/// The load test (issue 19, item 6): N clients over loopback, each sending its requests one after another, all at
/// once; zero errors and every answer equal to the same request sent alone. Bounded: by default 4 clients × 2
/// requests of 16 tokens on the tiny variant; MOE_LOAD_CLIENTS / MOE_LOAD_REQUESTS / MOE_LOAD_TOKENS raise it (at
/// most 32 / 8 / 64), and MOE_LOAD_REPORT=FILE appends the figures as a markdown table row (scripts/load-test.sh).
/// Throughput and latency are printed, never asserted: the machine is shared.
/// </summary>
[Collection(TinyModelCollection.Name)]
public sealed class LoadTests(TinyModelFixture fixture, ITestOutputHelper output)
{
    private static int Setting(string name, int fallback, int max) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), out int value) && value >= 1 ? Math.Min(value, max) : fallback;

    [Fact]
    public async Task Concurrent_clients_get_no_errors_and_the_answers_they_get_alone()
    {
        int clients = Setting("MOE_LOAD_CLIENTS", 4, 32);
        int perClient = Setting("MOE_LOAD_REQUESTS", 2, 8);
        int tokens = Setting("MOE_LOAD_TOKENS", 16, 64);
        await using var harness = await ServerHarness.Start(fixture.Vision, new MoeServerOptions { MaxConcurrentRequests = clients, MaxQueuedRequests = clients * perClient });

        // Distinct requests: half with the picture, different questions, greedy and seeded sampling.
        var requests = new List<string>();
        for (int i = 0; i < clients * perClient; i++)
        {
            string question = $"Question {i}: what do you see, and why?";
            object content = i % 2 == 0
                ? new object[] { new { type = "image_url", image_url = new { url = fixture.PictureDataUrl } }, new { type = "text", text = question } }
                : question;
            requests.Add(ServerHarness.Body(new
            {
                messages = new object[] { new { role = "user", content } },
                max_tokens = tokens,
                temperature = i % 3 == 0 ? 0.8 : 0.0,
                seed = i,
            }));
        }

        var alone = new string[requests.Count];
        var sequentialClock = Stopwatch.StartNew();
        for (int i = 0; i < requests.Count; i++) alone[i] = await Answer(harness, requests[i]);
        var sequential = sequentialClock.Elapsed;

        var together = new string[requests.Count];
        var latencies = new ConcurrentBag<double>();
        var errors = new ConcurrentBag<string>();
        long generated = 0;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(client => Task.Run(async () =>
        {
            for (int k = 0; k < perClient; k++)
            {
                int i = client * perClient + k;
                var start = Stopwatch.GetTimestamp();
                try
                {
                    var response = await harness.Post(requests[i]);
                    string body = await response.Content.ReadAsStringAsync();
                    if (response.StatusCode != HttpStatusCode.OK) { errors.Add($"request {i}: {(int)response.StatusCode} {body}"); continue; }
                    var root = JsonDocument.Parse(body).RootElement;
                    together[i] = root.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
                    Interlocked.Add(ref generated, root.GetProperty("usage").GetProperty("completion_tokens").GetInt64());
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
                {
                    errors.Add($"request {i}: {e.Message}");
                }
                latencies.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }
        })));
        var wall = clock.Elapsed;

        Assert.Empty(errors);
        for (int i = 0; i < requests.Count; i++) Assert.Equal(alone[i], together[i]);

        var sorted = latencies.Order().ToArray();
        double P(double q) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
        string F(double v) => v.ToString("0.0", CultureInfo.InvariantCulture);
        string row = $"| {TinyModelFixture.VisionVariant} | {clients} × {perClient} | {tokens} | {requests.Count / wall.TotalSeconds:0.00} | " +
                     $"{generated / wall.TotalSeconds:0.0} | {F(P(0.5))} | {F(P(0.95))} | {F(sequential.TotalMilliseconds / requests.Count)} | 0 |";
        output.WriteLine("| variant | clients × requests | max tokens | requests/s | generated tokens/s | p50 ms | p95 ms | alone, ms per request | errors |");
        output.WriteLine(row);
        if (Environment.GetEnvironmentVariable("MOE_LOAD_REPORT") is { Length: > 0 } report) File.AppendAllText(report, row + Environment.NewLine);
    }

    private static async Task<string> Answer(ServerHarness harness, string request)
    {
        var response = await harness.Post(request);
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        return JsonDocument.Parse(body).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
    }
}
