using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Parity;

/// <summary>
/// tiny-stablelm-moe composed by hand from the runtime modules (what the generator emits for that spec), so the
/// modules are checked against the reference goldens independently of the generated code: CLIP tower up to
/// select layer −2 with the CLS row dropped, mlp2x_gelu projector, StableLM-2 blocks (LayerNorm with bias, 25 %
/// rotary, q/k/v bias, SwiGLU) with a DeepSpeed top-2 MoE on layers 0 and 2.
/// </summary>
internal sealed class HandComposedStableLm : IVisionLanguageModel, IDisposable
{
    private const int Hidden = 64, Layers = 4, Heads = 4, HeadDim = 16, VisionWidth = 32, VisionHeads = 2, Patch = 14;
    private readonly CheckpointFolder _checkpoint;
    private readonly TokenEmbedding _embedding;
    private readonly (LayerNorm Norm1, CausalSelfAttention Attention, LayerNorm Norm2, IFeedForward Mlp)[] _blocks;
    private readonly LayerNorm _finalNorm;
    private readonly Linear _lmHead;
    private readonly ClipVisionEmbeddings _visionEmbeddings;
    private readonly LayerNorm _preLayerNorm;
    private readonly VisionEncoderLayer<GeluFeedForward>[] _visionLayers;
    private readonly GeluFeedForward _projector;

    public HandComposedStableLm(string checkpointPath, IBackend backend)
    {
        _checkpoint = CheckpointFolder.Open(checkpointPath);
        Tensor W(string key) => _checkpoint.GetTensor(key);
        Linear L(string key, bool bias) => new(backend, W(key + ".weight"), bias ? W(key + ".bias") : null);
        LayerNorm N(string key, float eps) => new(backend, W(key + ".weight"), W(key + ".bias"), eps);
        SwiGluFeedForward SwiGlu(string key) => new(L(key + ".gate_proj", false), L(key + ".up_proj", false), L(key + ".down_proj", false));

        _embedding = new TokenEmbedding(backend, W("model.embed_tokens.weight"));
        var geometry = new AttentionGeometry(Heads, Heads, HeadDim, RotaryDims: 4, RopeTheta: 10000);
        var moe = new MoeOptions(4, 2, MoeRoutingKind.DeepSpeed, 2.0, 0, SecondExpertPolicy.Deterministic);
        _blocks = new (LayerNorm, CausalSelfAttention, LayerNorm, IFeedForward)[Layers];
        for (int i = 0; i < Layers; i++)
        {
            string p = $"model.layers.{i}.";
            var attention = new CausalSelfAttention(L(p + "self_attn.q_proj", true), L(p + "self_attn.k_proj", true),
                L(p + "self_attn.v_proj", true), L(p + "self_attn.o_proj", false), geometry, i);
            IFeedForward mlp = i % 2 == 0
                ? new MoeFeedForward<SwiGluFeedForward>(new Linear(backend, W(p + "mlp.deepspeed_moe.gate.wg.weight"), null),
                    Enumerable.Range(0, 4).Select(e => SwiGlu($"{p}mlp.deepspeed_moe.experts.deepspeed_experts.{e}")).ToArray(),
                    moe, RoutingSites.Llm, i)
                : SwiGlu(p + "mlp");
            _blocks[i] = (N(p + "input_layernorm", 1e-5f), attention, N(p + "post_attention_layernorm", 1e-5f), mlp);
        }
        _finalNorm = N("model.norm", 1e-5f);
        _lmHead = L("lm_head", false);

        const string v = "model.image_tower.image_tower.vision_model.";
        _visionEmbeddings = new ClipVisionEmbeddings(backend, W(v + "embeddings.patch_embedding.weight"),
            W(v + "embeddings.class_embedding"), W(v + "embeddings.position_embedding.weight"), Patch);
        _preLayerNorm = N(v + "pre_layrnorm", 1e-5f);
        _visionLayers = new VisionEncoderLayer<GeluFeedForward>[2]; // hidden_states[-2] of 3 layers: layers 0 and 1
        for (int i = 0; i < _visionLayers.Length; i++)
        {
            string p = $"{v}encoder.layers.{i}.";
            _visionLayers[i] = new VisionEncoderLayer<GeluFeedForward>(N(p + "layer_norm1", 1e-5f),
                new EncoderSelfAttention(L(p + "self_attn.q_proj", true), L(p + "self_attn.k_proj", true), L(p + "self_attn.v_proj", true),
                    L(p + "self_attn.out_proj", true), VisionHeads, VisionWidth / VisionHeads),
                N(p + "layer_norm2", 1e-5f), new GeluFeedForward(L(p + "mlp.fc1", true), L(p + "mlp.fc2", true), Activation.QuickGelu));
        }
        _projector = new GeluFeedForward(L("model.mm_projector.image_spatial_proj.0", true),
            L("model.mm_projector.image_spatial_proj.2", true), Activation.GeluErf);

        Description = new ModelDescription
        {
            Name = "TinyStableLmMoe", DisplayName = "hand-composed", LlmFamily = "stablelm", VocabSize = 512, TokenizerSize = 500,
            HiddenSize = Hidden, Layers = Layers, Heads = Heads, KvHeads = Heads, HeadDim = HeadDim, MaxPositions = 4096,
            MoeLayers = [0, 2], Experts = 4, TopK = 2, TokenizerKind = "arcade100k", EosIds = [499], PromptTemplate = "stablelm",
            VisionTower = "clip", ImageSize = 56, ImageTokens = 16, ImageMean = [0.48145466f, 0.4578275f, 0.40821073f],
            ImageStd = [0.26862954f, 0.26130258f, 0.27577711f], VisionScales = [1], TotalParameters = 0, ActivatedParameters = 0,
        };
    }

    public ModelDescription Description { get; }
    public DType LlmWeightDType => _lmHead.Weight.DType;

    public Tensor EncodeImage(ForwardContext context, Tensor pixels)
    {
        var x = _preLayerNorm.Forward(context, _visionEmbeddings.Forward(context, pixels)); // [1+N, C]
        foreach (var layer in _visionLayers) x = layer.Forward(context, x);
        return _projector.Forward(context, x.SliceRows(1, x.Rows - 1));                   // drop CLS → [N, H]
    }

    public Tensor EmbedTokens(ForwardContext context, ReadOnlySpan<int> ids) => _embedding.Forward(context, ids);

    public Tensor Forward(ForwardContext context, Tensor embeddings)
    {
        var backend = context.Backend;
        var x = backend.Allocate(DType.F32, embeddings.Rows, Hidden);
        backend.Copy(embeddings, x);
        foreach (var (norm1, attention, norm2, mlp) in _blocks)
        {
            backend.Add(x, attention.Forward(context, norm1.Forward(context, x)), x);
            backend.Add(x, mlp.Forward(context, norm2.Forward(context, x)), x);
        }
        if (context.Cache is { } cache) cache.Length = context.StartPosition + embeddings.Rows;
        return _lmHead.Forward(context, _finalNorm.Forward(context, x));
    }

    public void Dispose() => _checkpoint.Dispose();
}
