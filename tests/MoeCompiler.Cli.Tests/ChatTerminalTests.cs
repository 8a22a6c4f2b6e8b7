using System.Diagnostics;

namespace MoeCompiler.Cli.Tests;

/// <summary>`moe chat` in a real pseudo-terminal (tmux), typed into as a person would.</summary>
public sealed class ChatTerminalTests(TinyWeightsFixture weights) : IClassFixture<TinyWeightsFixture>
{
    [Fact]
    public void ChatAnswersInAPseudoTerminalAndQuits()
    {
        if (!HasTmux())
        {
            // scripts/install-prerequisites.sh installs tmux; in CI its absence is a failure, not a skip.
            Assert.False(Environment.GetEnvironmentVariable("CI") == "true", "tmux is missing in CI");
            return;
        }
        string session = "moe-chat-" + Guid.NewGuid().ToString("N")[..8];
        string tool = Path.Combine(AppContext.BaseDirectory, "moe.dll");
        string command = $"dotnet '{tool}' chat TinyPhiChat --weights '{weights.PhiWeights}' --max-tokens 3; echo CHAT-EXITED-$?; sleep 30";
        Tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50", command);
        try
        {
            WaitFor(session, "you>", occurrences: 1);
            SendLine(session, $"/image {weights.Picture}");
            WaitFor(session, "new conversation about picture.png", occurrences: 1);
            SendLine(session, "What is in the picture?");
            WaitFor(session, "you>", occurrences: 3);
            string screen = Capture(session);
            Assert.Contains("assistant>", screen);
            SendLine(session, "/quit");
            WaitFor(session, "CHAT-EXITED-0", occurrences: 1);
        }
        finally
        {
            Tmux("kill-session", "-t", session);
        }
    }

    private static bool HasTmux()
    {
        try
        {
            return Tmux("-V").StartsWith("tmux", StringComparison.Ordinal);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    private static void SendLine(string session, string text)
    {
        Tmux("send-keys", "-t", session, "-l", text);
        Tmux("send-keys", "-t", session, "Enter");
    }

    private static string Capture(string session) => Tmux("capture-pane", "-p", "-t", session, "-S", "-200");

    private static void WaitFor(string session, string text, int occurrences)
    {
        var deadline = Stopwatch.StartNew();
        string screen = "";
        while (deadline.Elapsed < TimeSpan.FromSeconds(120))
        {
            screen = Capture(session);
            if (screen.Split(text).Length - 1 >= occurrences) return;
            Thread.Sleep(200);
        }
        Assert.Fail($"waited 120 s for {occurrences}× '{text}'; the terminal shows:\n{screen}");
    }

    private static string Tmux(params string[] args)
    {
        var info = new ProcessStartInfo("tmux") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return output;
    }
}
