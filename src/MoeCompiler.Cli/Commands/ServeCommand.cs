using System.CommandLine;
using System.Net;
using MoeCompiler.Serving;

namespace MoeCompiler.Cli.Commands;

/// <summary>`moe serve`: the OpenAI-compatible server and the chat page over one loaded variant (docs/serving.md).</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var variant = new Argument<string>("variant") { Description = "The variant (see 'moe list')." };
        var weights = new Option<string>("--weights", "-w") { Description = CommonOptions.WeightsDescription, Required = true };
        var host = new Option<string>("--host") { Description = "Address to listen on (default 127.0.0.1: this machine only; the server has no authentication).", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port (0: any free port; the address is printed).", DefaultValueFactory = _ => 8080 };
        var allowFiles = new Option<bool>("--allow-local-files") { Description = "Accept image_url parts that name files on this machine (off: data: URLs only)." };
        var maxConcurrent = new Option<int>("--max-concurrent") { Description = "Requests admitted at once.", DefaultValueFactory = _ => 4 };
        var maxQueue = new Option<int>("--max-queue") { Description = "Requests waiting beyond those; more are answered 429.", DefaultValueFactory = _ => 16 };
        var maxTokens = new Option<int>("--max-tokens-limit") { Description = "The most tokens one request may generate.", DefaultValueFactory = _ => 4096 };
        var dtype = CommonOptions.WeightType();
        var device = CommonOptions.Device();
        var source = new CommonOptions.CheckpointSourceOptions();
        var command = new Command("serve", "Serve a variant over an OpenAI-compatible HTTP API, with a chat page at /.")
        {
            variant, weights, host, port, allowFiles, maxConcurrent, maxQueue, maxTokens, dtype, device,
        };
        source.AddTo(command);
        command.SetAction(async (parse, cancellation) =>
        {
            var entry = Variants.Resolve(parse.GetValue(variant)!);
            var writer = parse.InvocationConfiguration.Output;
            string hostName = parse.GetValue(host)!;
            int portNumber = parse.GetValue(port);
            if (portNumber is < 0 or > 65535) throw new UserInputException($"--port must be 0–65535, not {portNumber}");
            if (hostName != "localhost" && !IPAddress.TryParse(hostName, out _)) throw new UserInputException($"--host must be an IP address or localhost, not '{hostName}'");
            if (parse.GetValue(maxConcurrent) < 1) throw new UserInputException("--max-concurrent must be ≥ 1");
            if (parse.GetValue(maxQueue) < 0) throw new UserInputException("--max-queue must be ≥ 0");
            if (parse.GetValue(maxTokens) < 1) throw new UserInputException("--max-tokens-limit must be ≥ 1");

            using var session = ModelSession.Open(entry, parse.GetValue(weights)!, parse.GetValue(device)!, parse.GetValue(dtype), source.Bind(parse));
            using var client = new MoeChatClient(session.Loaded, new MoeChatClientOptions
            {
                AllowLocalFiles = parse.GetValue(allowFiles),
                MaxOutputTokensLimit = parse.GetValue(maxTokens),
            });
            var gate = new object();
            await using var server = MoeServer.Create(client, new MoeServerOptions
            {
                Host = hostName,
                Port = portNumber,
                MaxConcurrentRequests = parse.GetValue(maxConcurrent),
                MaxQueuedRequests = parse.GetValue(maxQueue),
                Log = line => { lock (gate) writer.WriteLine(line); },
            });
            try
            {
                await server.StartAsync(cancellation);
            }
            catch (IOException e)
            {
                throw new UserInputException($"cannot listen on {hostName}:{portNumber}: {e.Message}", ExitCodes.Unavailable);
            }
            writer.WriteLine(Report.TokenizerLine(session));
            if (Report.VisionTowerLine(session) is { } towerLine) writer.WriteLine(towerLine);
            if (!IsLoopback(hostName))
                writer.WriteLine($"warning: listening on {hostName}, reachable from other machines; the server has no authentication");
            writer.WriteLine($"serving {entry.DisplayName} as '{client.ModelId}'");
            writer.WriteLine($"listening on {server.Address} (chat page: {server.Address}, API: {server.Address}v1); Ctrl+C stops");
            writer.Flush();
            try
            {
                await server.WaitForShutdownAsync(cancellation);
            }
            catch (OperationCanceledException)
            {
            }
            writer.WriteLine("stopped");
            return ExitCodes.Success;
        });
        return command;
    }

    private static bool IsLoopback(string host) => host == "localhost" || (IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));
}
