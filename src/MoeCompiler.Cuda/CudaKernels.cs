namespace MoeCompiler.Cuda;

/// <summary>Which embedded source defines each kernel entry point, and the NVRTC flags they are built with.</summary>
public static class CudaKernels
{
    private static readonly Dictionary<string, string[]> EntriesBySource = new(StringComparer.Ordinal)
    {
        ["elementwise.cu"] =
        [
            "add_f32", "mul_f32", "scale_f32", "add_bias_rows_f32", "activate_f32", "swiglu_f32",
            "convert_f32_to_bf16", "convert_f32_to_f16", "convert_bf16_to_f32", "convert_f16_to_f32",
        ],
        ["norms.cu"] = ["layer_norm_f32", "rms_norm_f32"],
        ["rotary.cu"] = ["rotary_f32"],
        ["softmax.cu"] = ["softmax_rows_f32", "router_topk_f32"],
        ["gather.cu"] = ["embedding_f32", "embedding_bf16", "embedding_f16", "gather_rows_f32", "scatter_add_rows_f32"],
        ["attention.cu"] =
        [
            "attention_rows_f32", "attention_rows_bf16", "attention_tiled_f32", "attention_tiled_bf16",
            "attention_split_f32", "attention_split_bf16", "attention_combine_f32",
        ],
        ["vision.cu"] = ["im2col_patches_f32", "avg_pool2d_f32", "upsample_bicubic_f32"],
        ["gemv.cu"] = ["gemv_bf16", "gemv_f16", "gemv_f32", "moe_gemv_bf16", "moe_gemv_f16", "moe_gemv_f32"],
        ["moe.cu"] = ["moe_route_f32", "moe_combine_f32"],
    };

    private static readonly Dictionary<string, string> SourceByEntry =
        EntriesBySource.SelectMany(p => p.Value.Select(e => (Entry: e, Source: p.Key))).ToDictionary(x => x.Entry, x => x.Source, StringComparer.Ordinal);

    public static IReadOnlyList<string> KernelNamesIn(string sourceName) =>
        EntriesBySource.TryGetValue(sourceName, out var names) ? names : Array.Empty<string>();

    public static string SourceOf(string kernel) =>
        SourceByEntry.TryGetValue(kernel, out var source) ? source : throw new ArgumentException($"unknown CUDA kernel {kernel}", nameof(kernel));

    public static IReadOnlyCollection<string> SourcesWithEntries => EntriesBySource.Keys;

    /// <summary>
    /// NVRTC flags: <paramref name="architecture"/> is <c>compute_XX</c> (PTX, JIT-compiled by the driver) or
    /// <c>sm_XX</c> (CUBIN). No fast-math: the kernels must match the CPU backend within f32 rounding.
    /// </summary>
    public static IReadOnlyList<string> CompileOptions(string architecture) =>
        // No --std: the sources are plain C++11, and each NVRTC's default dialect (C++14 in 11.x, C++17 later) is
        // the one sure to be supported.
        ["--gpu-architecture=" + architecture, "-default-device"];
}
