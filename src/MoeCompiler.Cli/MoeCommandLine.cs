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
