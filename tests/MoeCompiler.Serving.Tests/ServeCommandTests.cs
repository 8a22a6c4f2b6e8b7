using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using MoeCompiler.Cli;

namespace MoeCompiler.Serving.Tests;

/// <summary>`moe serve` as a user runs it: a process that prints its address, answers, and stops on Ctrl+C.</summary>
[Collection(TinyModelCollection.Name)]
public sealed class ServeCommandTests(TinyModelFixture fixture)
{
    [Fact]
    public async Task Moe_serve_listens_on_loopback_answers_and_stops_on_interrupt()
    {
        string moe = Path.Combine(AppContext.BaseDirectory, "moe.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in (string[])[moe, "serve", TinyModelFixture.VisionVariant, "-w", fixture.VisionWeights, "--port", "0"]) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var lines = new List<string>();
        var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (lines) lines.Add(e.Data);
            if (e.Data.StartsWith("listening on ", StringComparison.Ordinal)) listening.TrySetResult(e.Data.Split(' ')[2]);
        };
        var errors = new StringBuilder();
        process.ErrorDataReceived += (_, e) => { lock (errors) errors.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            string address = await listening.Task.WaitAsync(TimeSpan.FromSeconds(60));
            Assert.StartsWith("http://127.0.0.1:", address);
            using var http = new HttpClient { BaseAddress = new Uri(address) };
            Assert.Equal("ok", JsonDocument.Parse(await http.GetStringAsync("health")).RootElement.GetProperty("status").GetString());
            var response = await http.PostAsync("v1/chat/completions", new StringContent(
                """{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(3, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

            using (var interrupt = Process.Start("kill", ["-INT", process.Id.ToString()])) await interrupt.WaitForExitAsync();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {errors}");
            lock (lines)
            {
                Assert.Contains(lines, l => l.StartsWith("chat.completions: ", StringComparison.Ordinal));
                Assert.Contains("stopped", lines);
            }
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    [Theory]
    [InlineData("--port", "70000", "--port")]
    [InlineData("--host", "example.com", "--host")]
    [InlineData("--max-concurrent", "0", "--max-concurrent")]
    public void Bad_settings_are_exit_2_before_any_weight_is_read(string option, string value, string named)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = MoeCommandLine.Run(["serve", TinyModelFixture.VisionVariant, "-w", fixture.VisionWeights, option, value], output, error);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Contains(named, error.ToString());
    }

    [Fact]
    public void Missing_weights_are_exit_2()
    {
        var error = new StringWriter();
        int code = MoeCommandLine.Run(["serve", TinyModelFixture.VisionVariant, "-w", Path.Combine(fixture.Root, "nothing-here"), "--port", "0"], new StringWriter(), error);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Contains("weights not found", error.ToString());
    }
}
