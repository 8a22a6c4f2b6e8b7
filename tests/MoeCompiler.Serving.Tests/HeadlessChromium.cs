using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoeCompiler.Serving.Tests;

/// <summary>
/// Debian's chromium, headless, driven over the DevTools protocol (a WebSocket; no driver package). Found on PATH;
/// when missing, scripts/install-prerequisites.sh installs it (as root, from apt) once per test run.
/// </summary>
internal sealed class HeadlessChromium : IAsyncDisposable
{
    private static readonly Lazy<(string? Path, string Why)> s_found = new(Locate);
    private readonly Process _process;
    private readonly ClientWebSocket _socket;
    private readonly string _profile;
    private int _nextId;

    private HeadlessChromium(Process process, ClientWebSocket socket, string profile)
    {
        _process = process;
        _socket = socket;
        _profile = profile;
    }

    /// <summary>The browser's path, or null with the reason it could not be had.</summary>
    public static (string? Path, string Why) Find() => s_found.Value;

    private static (string?, string) Locate()
    {
        if (OnPath() is { } path) return (path, "");
        string? script = RepoFile("scripts/install-prerequisites.sh");
        if (script is null) return (null, "chromium is not installed and scripts/install-prerequisites.sh was not found");
        if (Environment.UserName != "root") return (null, "chromium is not installed and installing it needs root: run scripts/install-prerequisites.sh as root (apt-get install chromium)");
        using var install = Process.Start(new ProcessStartInfo("bash", script) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        string errors = install.StandardError.ReadToEnd();
        install.StandardOutput.ReadToEnd();
        if (!install.WaitForExit(TimeSpan.FromMinutes(10))) { install.Kill(true); return (null, "installing chromium took over 10 minutes"); }
        return OnPath() is { } installed ? (installed, "") : (null, $"chromium could not be installed by {script}: {errors.Trim()}");
    }

    private static string? OnPath()
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Append("/usr/bin"))
            foreach (string name in (ReadOnlySpan<string>)["chromium", "chromium-browser"])
                if (dir.Length > 0 && File.Exists(Path.Combine(dir, name))) return Path.Combine(dir, name);
        return null;
    }

    private static string? RepoFile(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, relative))) return Path.Combine(dir.FullName, relative);
        return null;
    }

    public static async Task<HeadlessChromium> Launch(string executable)
    {
        string profile = Path.Combine(Path.GetTempPath(), "moe-chromium-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(profile);
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        foreach (string arg in (string[])["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                     $"--user-data-dir={profile}", "about:blank"])
            start.ArgumentList.Add(arg);
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            // chromium writes its port to DevToolsActivePort in the profile once it listens
            string portFile = Path.Combine(profile, "DevToolsActivePort");
            var deadline = Stopwatch.StartNew();
            while (!File.Exists(portFile) || File.ReadAllLines(portFile).Length < 2)
            {
                if (process.HasExited) throw new InvalidOperationException($"chromium exited with {process.ExitCode} before listening");
                if (deadline.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException("chromium did not open its DevTools port within 60 s");
                await Task.Delay(50);
            }
            int port = int.Parse(File.ReadAllLines(portFile)[0]);
            using var http = new HttpClient();
            var targets = JsonNode.Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/json/list"))!.AsArray();
            string url = targets.First(t => (string?)t!["type"] == "page")!["webSocketDebuggerUrl"]!.GetValue<string>();
            var socket = new ClientWebSocket();
            await socket.ConnectAsync(new Uri(url), CancellationToken.None);
            return new HeadlessChromium(process, socket, profile);
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
    }

    public async Task Navigate(Uri url) => await Send("Page.navigate", new JsonObject { ["url"] = url.ToString() });

    /// <summary>Evaluates a JavaScript expression in the page (promises awaited) and returns its JSON value.</summary>
    public async Task<JsonNode?> Evaluate(string expression)
    {
        var result = await Send("Runtime.evaluate", new JsonObject { ["expression"] = expression, ["awaitPromise"] = true, ["returnByValue"] = true });
        if (result["exceptionDetails"] is { } exception) throw new InvalidOperationException($"page script failed: {exception.ToJsonString()}");
        return result["result"]!["value"];
    }

    /// <summary>Polls a boolean expression until true; fails with <paramref name="what"/> after <paramref name="limit"/>.</summary>
    public async Task WaitFor(string expression, string what, TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < limit)
        {
            if ((await Evaluate(expression))?.GetValue<bool>() == true) return;
            await Task.Delay(50);
        }
        throw new TimeoutException($"the page did not {what} within {limit.TotalSeconds} s");
    }

    private async Task<JsonNode> Send(string method, JsonObject parameters)
    {
        int id = ++_nextId;
        var message = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters };
        await _socket.SendAsync(Encoding.UTF8.GetBytes(message.ToJsonString()), WebSocketMessageType.Text, true, CancellationToken.None);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var buffer = new byte[1 << 16];
        while (true)
        {
            using var text = new MemoryStream();
            WebSocketReceiveResult received;
            do
            {
                received = await _socket.ReceiveAsync(buffer, timeout.Token);
                text.Write(buffer, 0, received.Count);
            } while (!received.EndOfMessage);
            var reply = JsonNode.Parse(text.ToArray())!;
            if ((int?)reply["id"] != id) continue;   // events and other replies
            if (reply["error"] is { } error) throw new InvalidOperationException($"{method}: {error.ToJsonString()}");
            return reply["result"]!;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try { _socket.Dispose(); } catch (WebSocketException) { }
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        _process.Dispose();
        try { Directory.Delete(_profile, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>A fact that needs headless chromium: skipped, with the reason, only when it cannot be found or installed
/// (MOE_REQUIRE_CHROMIUM=1 makes that a failure instead).</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public ChromiumFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("MOE_REQUIRE_CHROMIUM") == "1") return;
        var (path, why) = HeadlessChromium.Find();
        if (path is null) Skip = why;
    }
}
