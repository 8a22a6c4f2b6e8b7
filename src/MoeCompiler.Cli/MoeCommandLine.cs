using System.CommandLine;
using MoeCompiler.Cli.Commands;

namespace MoeCompiler.Cli;

/// <summary>The `moe` tool: one subcommand per file under Commands/.</summary>
public static class MoeCommandLine
{
    public static RootCommand Build()
    {
        var root = new RootCommand("MoeCompiler: run sparse mixture-of-experts vision-language models compiled from JSON specs.")
        {
            DemoCommand.Create(),
            ListCommand.Create(),
            InspectCommand.Create(),
            CreateWeightsCommand.Create(),
            RunCommand.Create(),
            ChatCommand.Create(),
            RoutingCommand.Create(),
            ImportConfigCommand.Create(),
            UpcycleCommand.Create(),
            BenchCommand.Create(),
            ServeCommand.Create(),
            QuantizeCommand.Create(),
        };
        return root;
    }

    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null)
    {
        var root = Build();
        var parse = root.Parse(args);
        var configuration = new InvocationConfiguration
        {
            Output = output ?? Console.Out,
            Error = error ?? Console.Error,
            EnableDefaultExceptionHandler = false,
        };
        if (parse.Errors.Count > 0 && parse.Action is not System.CommandLine.Help.HelpAction)
        {
            // Bad command-line syntax is bad input (exit 2), not a failure of the tool.
            foreach (var parseError in parse.Errors) configuration.Error.WriteLine($"moe: error: {parseError.Message}");
            configuration.Error.WriteLine("Run 'moe --help' or 'moe <command> --help' for usage.");
            return ExitCodes.BadInput;
        }
        try
        {
            return parse.Invoke(configuration);
        }
        catch (Exception ex) when (CliErrors.TryDescribe(ex, out string message, out int exitCode))
        {
            configuration.Error.WriteLine($"moe: error: {message}");
            return exitCode;
        }
    }
}
