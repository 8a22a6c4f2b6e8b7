namespace MoeCompiler.Cli;

public static class MoeCommandLine
{
    public static int Run(string[] args)
    {
        Console.Error.WriteLine("moe: no commands yet");
        return 1;
    }
}
