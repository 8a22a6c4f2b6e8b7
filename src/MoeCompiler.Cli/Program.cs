return MoeCompiler.Cli.MoeCommandLine.Run(args);
