using System.Text.Json;
using MoeCompiler.Cli;

namespace MoeCompiler.Cli.Tests;

/// <summary>Runs the `moe` command line in-process, capturing what a user would see.</summary>
internal static class CliRunner
{
    public sealed record Result(int ExitCode, string Out, string Error)
    {
        public JsonElement Json() => JsonDocument.Parse(Out).RootElement;
    }

    private static readonly object Gate = new();

    public static Result Run(params string[] args)
    {
        // Console-wide state (the chat input hook) is shared: one command at a time.
        lock (Gate)
        {
            var output = new StringWriter();
            var error = new StringWriter();
            int code = MoeCommandLine.Run(args, output, error);
            return new Result(code, output.ToString(), error.ToString());
        }
    }

    public static Result RunWithInput(string input, params string[] args)
    {
        lock (Gate)
        {
            var previous = Commands.ChatCommand.Input;
            Commands.ChatCommand.Input = () => new StringReader(input);
            try
            {
                var output = new StringWriter();
                var error = new StringWriter();
                int code = MoeCommandLine.Run(args, output, error);
                return new Result(code, output.ToString(), error.ToString());
            }
            finally
            {
                Commands.ChatCommand.Input = previous;
            }
        }
    }
}

/// <summary>A temporary folder per test class, with the tiny demo variant's random weights and a picture.</summary>
public sealed class TinyWeightsFixture : IDisposable
{
    public TinyWeightsFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "moe-cli-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Root);
        PhiWeights = Path.Combine(Root, "phi");
        QwenWeights = Path.Combine(Root, "qwen");
        var r1 = CliRunner.Run("create-weights", "TinyPhiChat", "--out", PhiWeights, "--seed", "7");
        var r2 = CliRunner.Run("create-weights", "TinyQwenMoe", "--out", QwenWeights, "--seed", "7");
        if (r1.ExitCode != 0 || r2.ExitCode != 0) throw new InvalidOperationException(r1.Error + r2.Error);
        Picture = Path.Combine(Root, "picture.png");
        using (var resource = typeof(MoeCommandLine).Assembly.GetManifestResourceStream("MoeCompiler.Cli.Assets.demo.png")!)
        using (var file = File.Create(Picture))
            resource.CopyTo(file);
    }

    public string Root { get; }
    public string PhiWeights { get; }
    public string QwenWeights { get; }
    public string Picture { get; }

    public string Path_(string name) => Path.Combine(Root, name);

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}
