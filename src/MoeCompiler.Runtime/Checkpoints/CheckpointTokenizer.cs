using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Tokenizers;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// The tokenizer a variant runs with: the checkpoint folder's own tokenizer files when it has any (so its added
/// tokens, BOS/EOS and SentencePiece legacy mode are the checkpoint's), otherwise the tokenizer bundled for the
/// variant's kind (<see cref="TokenizerLoader.ForKind(string)"/>). Which file of a folder is used, and how its
/// tokenizer_config.json / special_tokens_map.json / added_tokens.json are read, is
/// <see cref="TokenizerLoader.LoadFolder"/>'s rule: the reference's (AutoTokenizer with use_fast=False, transformers 4.37).
/// A folder's tokenizer must fit the variant's spec (<see cref="FindMismatches"/>); the bundled ones are the spec's by
/// construction and are not checked (test-size specs give them a smaller embedding on purpose, and
/// <see cref="VisionLanguagePipeline.TokenizePrompt"/> rejects each id that does not fit).
/// </summary>
public sealed record CheckpointTokenizer
{
    public required ITokenizer Tokenizer { get; init; }

    /// <summary>The file in the checkpoint folder the tokenizer was built from; null for a bundled tokenizer.</summary>
    public string? TokenizerFile { get; init; }

    /// <summary>The folder's configuration files that were read (tokenizer_config.json, special_tokens_map.json, added_tokens.json).</summary>
    public IReadOnlyList<string> ConfigFiles { get; init; } = [];

    /// <summary>The bundled kind used when the folder has no tokenizer file; null when the folder's tokenizer is used.</summary>
    public string? BundledKind { get; init; }

    /// <summary>Where the tokenizer came from, for reports: the tokenizer file (and the configuration files read
    /// with it) or "bundled KIND".</summary>
    public string Source => TokenizerFile is null
        ? $"bundled {BundledKind}"
        : ConfigFiles.Count == 0 ? TokenizerFile : $"{TokenizerFile} (with {string.Join(", ", ConfigFiles.Select(Path.GetFileName))})";

    /// <summary>The bundled tokenizer of the variant's kind.</summary>
    public static CheckpointTokenizer Bundled(ModelDescription description)
    {
        ArgumentNullException.ThrowIfNull(description);
        string kind = VisionLanguagePipeline.TokenizerKindFor(description);
        return new CheckpointTokenizer { Tokenizer = TokenizerLoader.ForKind(kind), BundledKind = kind };
    }

    /// <summary>The tokenizer of <paramref name="checkpointFolder"/> when it has tokenizer files, checked against
    /// the spec; else the bundled one. A null folder (e.g. weights given as a single file) means the bundled one.</summary>
    /// <exception cref="CheckpointTokenizerException">The folder's tokenizer files cannot be read or do not fit the
    /// variant; the message names the file and every mismatch.</exception>
    /// <exception cref="TokenizerLoadException">The bundled tokenizer files are missing (a broken installation).</exception>
    public static CheckpointTokenizer Load(string? checkpointFolder, ModelDescription description)
    {
        ArgumentNullException.ThrowIfNull(description);
        if (checkpointFolder is null) return Bundled(description);
        if (!Directory.Exists(checkpointFolder)) throw new CheckpointException(checkpointFolder, "no such checkpoint folder");
        if (!TokenizerLoader.HasTokenizerFiles(checkpointFolder)) return Bundled(description);

        FolderTokenizer loaded;
        try
        {
            loaded = TokenizerLoader.LoadFolder(checkpointFolder);
        }
        catch (TokenizerLoadException e)
        {
            throw new CheckpointTokenizerException(e.FilePath, description.Name, [e.Problem], e);
        }
        var mismatches = FindMismatches(loaded.Tokenizer, description);
        if (mismatches.Count > 0) throw new CheckpointTokenizerException(loaded.TokenizerFile, description.Name, mismatches);
        return new CheckpointTokenizer { Tokenizer = loaded.Tokenizer, TokenizerFile = loaded.TokenizerFile, ConfigFiles = loaded.ConfigFiles };
    }

    /// <summary>How <paramref name="tokenizer"/> disagrees with the spec: its algorithm family against TokenizerKind,
    /// its size against VocabSize (an id the embedding has no row for) and TokenizerSize (len(tokenizer), which bounds
    /// what the model may generate), its BOS and its EOS ids. Empty when it fits.</summary>
    public static IReadOnlyList<string> FindMismatches(ITokenizer tokenizer, ModelDescription description)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(description);
        var problems = new List<string>();
        var d = description;

        bool specSentencePiece = d.TokenizerKind is "sentencepiece" or "openchat";
        bool isSentencePiece = tokenizer is SentencePieceBpeTokenizer;
        if (specSentencePiece != isSentencePiece)
            problems.Add($"it is a {Family(isSentencePiece)} tokenizer, but {d.Name}'s tokenizer kind \"{d.TokenizerKind}\" is {Family(specSentencePiece)}");

        if (tokenizer.VocabSize > d.VocabSize)
            problems.Add($"it has {tokenizer.VocabSize} tokens and so produces ids up to {tokenizer.VocabSize - 1}, but {d.Name}'s embedding has {d.VocabSize} rows (vocabSize)");
        else if (tokenizer.VocabSize != d.TokenizerSize)
            problems.Add($"it has {tokenizer.VocabSize} tokens, but {d.Name}'s spec says {d.TokenizerSize} (tokenizerSize)");

        if (tokenizer.BosId != d.BosId)
            problems.Add($"its BOS is {Show(tokenizer.BosId)}, but {d.Name}'s spec says {Show(d.BosId)}");

        if (!tokenizer.EosIds.Order().SequenceEqual(d.EosIds.Distinct().Order()))
            problems.Add($"its EOS is [{string.Join(", ", tokenizer.EosIds)}], but {d.Name}'s spec says [{string.Join(", ", d.EosIds)}]");
        return problems;
    }

    private static string Family(bool sentencePiece) => sentencePiece ? "SentencePiece BPE" : "byte-level BPE";

    private static string Show(int? id) => id is int i ? i.ToString(System.Globalization.CultureInfo.InvariantCulture) : "none";
}

/// <summary>A checkpoint folder's tokenizer files cannot be read, or the tokenizer they make does not fit the
/// variant (kind, vocabulary size, BOS or EOS); <see cref="CheckpointException.FilePath"/> is the file at fault.</summary>
public sealed class CheckpointTokenizerException : CheckpointException
{
    public CheckpointTokenizerException(string filePath, string variant, IReadOnlyList<string> problems, Exception? inner = null)
        : base(filePath, $"this tokenizer cannot be used with {variant}: " + string.Join("; ", problems), inner)
    {
        Variant = variant;
        Problems = problems;
    }

    public string Variant { get; }

    /// <summary>Each problem in a sentence of its own.</summary>
    public IReadOnlyList<string> Problems { get; }
}
