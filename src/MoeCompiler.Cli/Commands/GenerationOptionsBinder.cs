using System.CommandLine;
using MoeCompiler.Runtime.Generation;

namespace MoeCompiler.Cli.Commands;

/// <summary>The sampling options run, chat and routing share. Greedy unless --temperature is above 0.</summary>
internal sealed class GenerationOptionsBinder
{
    public Option<int> MaxTokens { get; } = new("--max-tokens") { Description = "Most new tokens to generate.", DefaultValueFactory = _ => 128 };
    public Option<float> Temperature { get; } = new("--temperature") { Description = "0 = greedy (default); the reference CLI samples at 0.2.", DefaultValueFactory = _ => 0f };
    public Option<float> TopP { get; } = new("--top-p") { Description = "Nucleus sampling mass.", DefaultValueFactory = _ => 1f };
    public Option<int> TopK { get; } = new("--top-k") { Description = "Sample among the k most likely tokens (0 = all).", DefaultValueFactory = _ => 0 };
    public Option<float> RepetitionPenalty { get; } = new("--repetition-penalty") { Description = "1 = none.", DefaultValueFactory = _ => 1f };
    public Option<ulong> Seed { get; } = new("--seed") { Description = "Sampling seed.", DefaultValueFactory = _ => 0x5EED };

    public void AddTo(Command command)
    {
        command.Add(MaxTokens);
        command.Add(Temperature);
        command.Add(TopP);
        command.Add(TopK);
        command.Add(RepetitionPenalty);
        command.Add(Seed);
    }

    public GenerationOptions Bind(ParseResult parse)
    {
        var options = new GenerationOptions
        {
            MaxNewTokens = parse.GetValue(MaxTokens),
            Sampling = new SamplingOptions
            {
                Temperature = parse.GetValue(Temperature),
                TopP = parse.GetValue(TopP),
                TopK = parse.GetValue(TopK),
                RepetitionPenalty = parse.GetValue(RepetitionPenalty),
                Seed = parse.GetValue(Seed),
            },
        };
        try
        {
            options.Validate();
            options.Sampling.Validate();
        }
        catch (ArgumentException e)
        {
            throw new UserInputException(e.Message);
        }
        return options;
    }
}
