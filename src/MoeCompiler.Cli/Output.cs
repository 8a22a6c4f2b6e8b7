using System.Globalization;
using System.Text.Json;
using Spectre.Console;

namespace MoeCompiler.Cli;

/// <summary>Human output through Spectre.Console, or one JSON document for scripts (--json).</summary>
internal sealed class Output
{
    private static readonly JsonSerializerOptions s_json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
    };

    public Output(TextWriter writer, bool json)
    {
        Writer = writer;
        Json = json;
        Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = writer == System.Console.Out && !System.Console.IsOutputRedirected ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = writer == System.Console.Out && !System.Console.IsOutputRedirected ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = writer == System.Console.Out && !System.Console.IsOutputRedirected ? InteractionSupport.Detect : InteractionSupport.No,
        });
        // Redirected output (files, pipes, tests) has no terminal width; don't wrap tables at 80 columns.
        if (writer != System.Console.Out || System.Console.IsOutputRedirected) Console.Profile.Width = 160;
    }

    public TextWriter Writer { get; }
    public bool Json { get; }
    public IAnsiConsole Console { get; }
    public bool Interactive => Console.Profile.Capabilities.Interactive;

    public void WriteJson<T>(T value) => Writer.WriteLine(JsonSerializer.Serialize(value, s_json));

    public static string Count(long n) => n switch
    {
        >= 1_000_000_000 => (n / 1e9).ToString("0.00", CultureInfo.InvariantCulture) + "B",
        >= 1_000_000 => (n / 1e6).ToString("0.00", CultureInfo.InvariantCulture) + "M",
        >= 1_000 => (n / 1e3).ToString("0.0", CultureInfo.InvariantCulture) + "K",
        _ => n.ToString(CultureInfo.InvariantCulture),
    };

    public static string Bytes(double bytes) => bytes switch
    {
        >= 1L << 30 => (bytes / (1L << 30)).ToString("0.00", CultureInfo.InvariantCulture) + " GiB",
        >= 1L << 20 => (bytes / (1L << 20)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB",
        >= 1L << 10 => (bytes / (1L << 10)).ToString("0.0", CultureInfo.InvariantCulture) + " KiB",
        _ => bytes.ToString("0", CultureInfo.InvariantCulture) + " B",
    };
}
