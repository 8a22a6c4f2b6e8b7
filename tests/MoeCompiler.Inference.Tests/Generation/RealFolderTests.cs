using MoeCompiler.Models;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Inference.Tests.Generation;

/// <summary>
/// Checkpoints as people have them, built by the test: a Hugging Face hub cache (blobs exposed through relative
/// symbolic links, refs naming commits), a model folder without its vision tower plus the tower's own CLIP-layout
/// checkpoint (keys vision_model.*), and shards that are links to things that are not files. Everything goes through
/// <see cref="LoadedModel"/>, the API the CLI and the examples use.
/// </summary>
public sealed class RealFolderTests(RealFolderTests.Fixture fixture) : IClassFixture<RealFolderTests.Fixture>
{
    private const string CommitMain = "1111111111111111111111111111111111111111";
    private const string CommitV2 = "2222222222222222222222222222222222222222";
    private const string TowerCommit = "3333333333333333333333333333333333333333";
    private const string TowerPrefix = "model.image_tower.image_tower.vision_model.";

    public sealed class Fixture : IDisposable
    {
        public Fixture()
        {
            Root = Path.Combine(Path.GetTempPath(), "moe-real-folders-" + Guid.NewGuid().ToString("N"));
            Hub = Path.Combine(Root, "hub");
            var manifest = TinyPhiChat.Manifest;
            Full = Folder("full");
            Write(Path.Combine(Full, "model.safetensors"), manifest.Entries, seed: 7, rename: k => k);

            // The model checkpoint without the tower's copy, and the tower as CLIP's own checkpoint (vision_model.*),
            // with the parts of a CLIPModel the vision tower does not use.
            var tower = manifest.Entries.Where(e => e.Key.StartsWith(TowerPrefix, StringComparison.Ordinal)).ToArray();
            Assert.NotEmpty(tower);
            TowerKeys = tower.Length;
            TowerLess = Folder("towerless");
            Write(Path.Combine(TowerLess, "model.safetensors"), manifest.Entries.Except(tower), seed: 7, rename: k => k);
            Tower = Folder("clip-tower");
            Write(Path.Combine(Tower, "model.safetensors"), tower, seed: 7, rename: ToTowerKey, extra: ["text_model.embeddings.weight", "logit_scale"]);
            OtherTower = Folder("clip-tower-other");
            Write(Path.Combine(OtherTower, "model.safetensors"), tower, seed: 99, rename: ToTowerKey);

            // The hub cache: main and a tag v2 (other weights) of acme/tiny-phi, and acme/tiny-clip.
            string repo = Path.Combine(Hub, "models--acme--tiny-phi");
            AddSnapshot(repo, CommitMain, "main", Path.Combine(Full, "model.safetensors"), "aaaa");
            string v2 = Folder("v2");
            Write(Path.Combine(v2, "model.safetensors"), manifest.Entries, seed: 8, rename: k => k);
            AddSnapshot(repo, CommitV2, "v2", Path.Combine(v2, "model.safetensors"), "bbbb");
            AddSnapshot(Path.Combine(Hub, "models--acme--tiny-clip"), TowerCommit, "main", Path.Combine(Tower, "model.safetensors"), "cccc");
        }

        public string Root { get; }
        public string Hub { get; }
        public string Full { get; }
        public string TowerLess { get; }
        public string Tower { get; }
        public string OtherTower { get; }
        public int TowerKeys { get; }

        public string? Env(string name) => name == "HF_HUB_CACHE" ? Hub : null;

        public string Folder(string name)
        {
            string path = Path.Combine(Root, name);
            Directory.CreateDirectory(path);
            return path;
        }

        private static string ToTowerKey(string key) => key.StartsWith(TowerPrefix, StringComparison.Ordinal) ? "vision_model." + key[TowerPrefix.Length..] : key;

        private static void Write(string path, IEnumerable<WeightEntry> entries, ulong seed, Func<string, string> rename, string[]? extra = null)
        {
            var tensors = entries.Select(e => KeyValuePair.Create(rename(e.Key), RandomCheckpoint.Create(e, seed, DType.F32))).ToList();
            foreach (string key in extra ?? [])
                tensors.Add(KeyValuePair.Create(key, RandomCheckpoint.Create(new WeightEntry(key, [4, 2], WeightRole.Attention), seed, DType.F32)));
            SafetensorsWriter.Write(path, tensors);
        }

        /// <summary>As huggingface_hub lays a download out: the file as a blob, a relative link in the snapshot, the
        /// commit in refs/NAME.</summary>
        private static void AddSnapshot(string repo, string commit, string refName, string file, string blobName)
        {
            Directory.CreateDirectory(Path.Combine(repo, "blobs"));
            Directory.CreateDirectory(Path.Combine(repo, "refs"));
            string snapshot = Path.Combine(repo, "snapshots", commit);
            Directory.CreateDirectory(snapshot);
            File.Copy(file, Path.Combine(repo, "blobs", blobName));
            File.CreateSymbolicLink(Path.Combine(snapshot, "model.safetensors"), Path.Combine("..", "..", "blobs", blobName));
            File.WriteAllText(Path.Combine(repo, "refs", refName), commit);
        }

        public void Dispose() => Directory.Delete(Root, recursive: true);
    }

    private static LoadedModel Open(string weights, ModelLoadOptions? options = null) =>
        LoadedModel.Open(TinyPhiChat.ModelDescription, TinyPhiChat.Manifest, TinyPhiChat.Load, weights, options);

    private ModelLoadOptions Options(string? revision = null, string? tower = null) =>
        new() { Revision = revision, VisionTower = tower, Environment = fixture.Env };

    /// <summary>The logits of a prompt with one image through the model: a fingerprint of every weight that matters.</summary>
    private static float[] Fingerprint(LoadedModel model)
    {
        int size = model.Description.ImageSize;
        var pixels = new float[3 * size * size];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = MathF.Sin(i * 0.37f);
        var image = model.UploadPixels(pixels);
        var result = model.Forward([1, PromptSplicer.ImageTokenId, 5, 9], [image]);
        Assert.Equal(3 + model.Description.ImageTokens, result.Rows);
        Assert.Equal(model.Description.VocabSize, result.VocabSize);
        Assert.Equal(model.Description.ImageTokens, result.IsImageToken.Count(x => x));
        Assert.NotEmpty(result.Routing);
        return result.Logits;
    }

    private float[] FullFingerprint()
    {
        using var full = Open(fixture.Full);
        return Fingerprint(full);
    }

    [Fact]
    public void ARepositoryIdOpensTheMainSnapshotThroughItsSymbolicLinks()
    {
        using var model = Open("acme/tiny-phi", Options());
        Assert.Equal(Path.Combine(fixture.Hub, "models--acme--tiny-phi", "snapshots", CommitMain), model.CheckpointPath);
        Assert.True(new FileInfo(Path.Combine(model.CheckpointPath, "model.safetensors")).LinkTarget is not null);
        Assert.Equal(FullFingerprint(), Fingerprint(model));
        Assert.Equal(model.CheckpointPath, model.VisionTowerSource);
    }

    [Fact]
    public void ARevisionPicksATagOrACommit()
    {
        using var tagged = Open("acme/tiny-phi", Options(revision: "v2"));
        using var byCommit = Open("acme/tiny-phi", Options(revision: CommitV2));
        Assert.EndsWith(CommitV2, tagged.CheckpointPath, StringComparison.Ordinal);
        var v2 = Fingerprint(tagged);
        Assert.Equal(v2, Fingerprint(byCommit));
        Assert.NotEqual(FullFingerprint(), v2);
    }

    [Fact]
    public void AnUnknownRevisionOrRepositoryNamesWhereItLooked()
    {
        var e = Assert.Throws<CheckpointException>(() => Open("acme/tiny-phi", Options(revision: "v9")));
        Assert.Contains("revision 'v9' is not in the hub cache", e.Message);
        Assert.Contains("refs there: main, v2", e.Message);
        Assert.Contains("HF_HUB_CACHE", e.Message);

        e = Assert.Throws<CheckpointException>(() => Open("acme/absent", Options()));
        Assert.Contains(Path.Combine(fixture.Hub, "models--acme--absent"), e.Message);

        e = Assert.Throws<CheckpointException>(() => Open(fixture.Full, Options(revision: "main")));
        Assert.Contains("a revision ('main') applies only to a repository id", e.Message);
    }

    [Fact]
    public void ACheckpointWithoutItsTowerTakesTheTowersOwnCheckpoint()
    {
        using var split = Open(fixture.TowerLess, Options(tower: fixture.Tower));
        Assert.Equal(fixture.Tower, split.VisionTowerSource);
        Assert.Equal(FullFingerprint(), Fingerprint(split));

        // The same tower from the hub cache by repository id.
        using var fromHub = Open(fixture.TowerLess, Options(tower: "acme/tiny-clip"));
        Assert.EndsWith(TowerCommit, fromHub.VisionTowerSource, StringComparison.Ordinal);
        Assert.Equal(FullFingerprint(), Fingerprint(fromHub));
    }

    [Fact]
    public void ASeparateTowerReplacesTheCheckpointsCopyWhenAskedFor()
    {
        using var other = Open(fixture.Full, Options(tower: fixture.OtherTower));
        using var splitOther = Open(fixture.TowerLess, Options(tower: fixture.OtherTower));
        var replaced = Fingerprint(other);
        Assert.Equal(Fingerprint(splitOther), replaced);
        Assert.NotEqual(FullFingerprint(), replaced);
    }

    [Fact]
    public void ACheckpointWithoutItsTowerAndNoTowerGivenSaysWhatToDo()
    {
        var e = Assert.Throws<CheckpointException>(() => Open(fixture.TowerLess, Options()));
        Assert.Contains("has no vision tower weights", e.Message);
        Assert.Contains("--vision-tower", e.Message);

        // One level down, binding alone says the same, with the number of tower tensors it looked for.
        var direct = Assert.Throws<CheckpointException>(() => TinyPhiChat.Load(fixture.TowerLess, Runtime.Backends.CpuBackend.Shared));
        Assert.Contains($"none of the {fixture.TowerKeys} tensors under '{TowerPrefix}'", direct.Message);
    }

    [Fact]
    public void ATowerThatDoesNotFitIsCheckedKeyByKey()
    {
        string bad = fixture.Folder("bad-tower-" + Guid.NewGuid().ToString("N"));
        var tower = TinyPhiChat.Manifest.Entries.Where(e => e.Key.StartsWith(TowerPrefix, StringComparison.Ordinal)).ToArray();
        var tensors = tower.Skip(1).Select(e => KeyValuePair.Create("vision_model." + e.Key[TowerPrefix.Length..], RandomCheckpoint.Create(e, 1, DType.F32))).ToList();
        SafetensorsWriter.Write(Path.Combine(bad, "model.safetensors"), tensors);
        var e = Assert.Throws<CheckpointBindingException>(() => Open(fixture.TowerLess, Options(tower: bad)));
        Assert.Contains(bad, e.Message);
        Assert.Contains("vision_model." + tower[0].Key[TowerPrefix.Length..], e.Message);
    }

    [Fact]
    public void AShardThatLinksToSomethingOtherThanAFileIsRefusedBeforeReading()
    {
        string devZero = fixture.Folder("dev-zero-" + Guid.NewGuid().ToString("N"));
        File.CreateSymbolicLink(Path.Combine(devZero, "model.safetensors"), "/dev/zero");
        var e = Assert.ThrowsAny<CheckpointException>(() => Open(devZero, Options()));
        Assert.Contains("character device", e.Message);

        string dangling = fixture.Folder("dangling-" + Guid.NewGuid().ToString("N"));
        File.CreateSymbolicLink(Path.Combine(dangling, "model.safetensors"), Path.Combine(dangling, "missing-blob"));
        e = Assert.ThrowsAny<CheckpointException>(() => Open(dangling, Options()));
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void TheHubCacheFolderFollowsTheHuggingFaceVariables()
    {
        static Func<string, string?> Env(params (string Name, string Value)[] set) => name => set.FirstOrDefault(s => s.Name == name).Value;
        Assert.Equal(("/c", "HF_HUB_CACHE"), HubCache.CacheFolder(Env(("HF_HUB_CACHE", "/c"), ("HF_HOME", "/h"), ("HOME", "/u"))));
        Assert.Equal((Path.Combine("/h", "hub"), "HF_HOME"), HubCache.CacheFolder(Env(("HF_HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/u"))));
        Assert.Equal((Path.Combine("/x", "huggingface", "hub"), "XDG_CACHE_HOME"), HubCache.CacheFolder(Env(("XDG_CACHE_HOME", "/x"), ("HOME", "/u"))));
        Assert.Equal((Path.Combine("/u", ".cache", "huggingface", "hub"), "the default"), HubCache.CacheFolder(Env(("HOME", "/u"))));
        Assert.Equal((Path.Combine("/u", "hf"), "HF_HUB_CACHE"), HubCache.CacheFolder(Env(("HF_HUB_CACHE", "~/hf"), ("HOME", "/u"))));
        Assert.True(HubCache.IsRepoId("openai/clip-vit-large-patch14-336"));
        Assert.False(HubCache.IsRepoId("../etc"));
        Assert.False(HubCache.IsRepoId("a/../b"));
        Assert.False(HubCache.IsRepoId("/abs/path"));
    }

    [Fact]
    public void ARefThatIsNotACommitHashIsRefused()
    {
        string hub = fixture.Folder("hub-bad-ref-" + Guid.NewGuid().ToString("N"));
        string repo = Path.Combine(hub, "models--acme--x");
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), "../../../etc");
        var e = Assert.Throws<CheckpointException>(() => HubCache.Resolve("acme/x", null, n => n == "HF_HUB_CACHE" ? hub : null));
        Assert.Contains("should hold a commit hash", e.Message);
        e = Assert.Throws<CheckpointException>(() => HubCache.Resolve("acme/x", "../../x", n => n == "HF_HUB_CACHE" ? hub : null));
        Assert.Contains("is not a branch, tag or commit name", e.Message);
    }

    [Fact]
    public void AskAndGenerateRunThroughTheLoadedModel()
    {
        using var model = Open(fixture.Full, Options());
        Assert.Equal("bundled gpt2", model.TokenizerSource); // the folder has no tokenizer files
        string image = Path.Combine(fixture.Root, "picture-" + Guid.NewGuid().ToString("N") + ".png");
        var rgb = new byte[24 * 20 * 3];
        for (int i = 0; i < rgb.Length; i++) rgb[i] = (byte)(i * 13 % 251);
        File.WriteAllBytes(image, Imaging.PngEncoder.Encode(new Imaging.RgbImage(24, 20, rgb)));
        var options = new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 5, StopOnEos = false } };
        var answer = model.Ask([image], "What is this?", options);
        Assert.InRange(answer.TokenIds.Length, 1, 5);

        // Generate from the same ids and pixels gives the same tokens (greedy; Ask may stop earlier on the template's
        // stop string, which Generate without a decoder does not know).
        var pixels = model.LoadImage(image);
        var generated = model.Generate(new GenerationRequest
        {
            PromptIds = answer.PromptIds,
            Images = [pixels],
            Options = new GenerationOptions { MaxNewTokens = 5, StopOnEos = false },
        });
        Assert.Equal(5, generated.TokenIds.Length);
        Assert.Equal(answer.TokenIds, generated.TokenIds.Take(answer.TokenIds.Length));
    }
}
