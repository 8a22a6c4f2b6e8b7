using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MoeCompiler.Cuda.Native;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda;

// CudaBackend's MoE layer on the device: routing, grouped expert products, scatter (the class and its state: CudaBackend.cs).
public sealed unsafe partial class CudaBackend
{
    // ---------------------------------------------------------------- MoE on the device

    /// <summary>Per expert weight list: a device array of the experts' pointers, made once.</summary>
    private sealed class ExpertTable(CudaStorage storage, DType dtype, bool aligned)
    {
        public CudaStorage Storage { get; } = storage;
        public DType DType { get; } = dtype;
        /// <summary>Every pointer is 16-byte aligned (the GEMV kernels' vector loads).</summary>
        public bool Aligned { get; } = aligned;
    }

    /// <summary>
    /// Decode-sized calls (at most <see cref="GemvMaxRows"/> rows) of either routing, except DeepSpeed top-1 with the
    /// sampled policy when capacity could drop a token (its random token selection is drawn on the host), with
    /// experts whose weights all live here in one 16-bit or f32 dtype.
    /// </summary>
    public bool CanRunMoe(int tokens, Runtime.Modules.MoeOptions options, MoeExpertWeights experts)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(experts);
        if (tokens <= 0 || tokens > GemvMaxRows || experts.Experts != options.Experts) return false;
        if (options.Routing == Runtime.Modules.MoeRoutingKind.DeepSpeed && options.TopK == 1
            && options.SecondExpert == Runtime.Modules.SecondExpertPolicy.Sampled
            && Runtime.Modules.MoeRouter.Capacity(tokens, options.Experts, 1, options.EvalCapacityFactor, options.MinCapacity) < tokens)
            return false;
        if ((experts.Kind == MoeExpertKind.GatedSilu) != (experts.Second is not null)) return false;
        foreach (var list in new[] { experts.First, experts.Second, experts.Down })
        {
            if (list is null) continue;
            if (list.Length != options.Experts) return false;
            foreach (var w in list)
                if (!IsOurs(w) || w.DType != list[0].DType || w.DType is not (DType.BF16 or DType.F16 or DType.F32) || w.Rank != 2) return false;
        }
        foreach (var list in new[] { experts.FirstBias, experts.DownBias })
            if (list is not null && (list.Length != options.Experts || list.Any(b => !IsOurs(b) || b.DType != DType.F32))) return false;
        return true;
    }

    public void RunMoe(Tensor x, Tensor routerLogits, Runtime.Modules.MoeOptions options, MoeExpertWeights experts,
        ReadOnlySpan<float> secondChoiceNoise, Tensor y, Action<int[], float[]>? onRouting)
    {
        int tokens = x.Rows, count = options.Experts, k = options.TopK, slots = tokens * k;
        if (!CanRunMoe(tokens, options, experts)) throw new ArgumentException($"RunMoe: this layer cannot run on the device (CanRunMoe is false for {tokens} rows)");
        if (routerLogits.Rows != tokens || routerLogits.Columns != count) throw new ArgumentException($"RunMoe: router logits {routerLogits} should be [{tokens}, {count}]");
        if (x.Columns != experts.InFeatures) throw new ArgumentException($"RunMoe: x {x} does not match experts taking {experts.InFeatures} features");
        if (y.Rows != tokens || y.Columns != experts.OutFeatures) throw new ArgumentException($"RunMoe: y {y} should be [{tokens}, {experts.OutFeatures}]");
        if (!secondChoiceNoise.IsEmpty && secondChoiceNoise.Length != tokens * count)
            throw new ArgumentException($"RunMoe: {secondChoiceNoise.Length} noise values for {tokens} × {count}");
        Tensor input = AsF32(Input(x)), logits = AsF32(Input(routerLogits));
        RequireDeviceOutput(y);

        var first = Table(experts.First);
        var second = experts.Second is null ? null : Table(experts.Second);
        var down = Table(experts.Down);
        var firstBias = experts.FirstBias is null ? null : Table(experts.FirstBias);
        var downBias = experts.DownBias is null ? null : Table(experts.DownBias);

        // Routing: chosen, weights, slot_of [slots]; probabilities [tokens, experts]; counts, offsets [experts]; group_rows [slots].
        long intsAndFloats = 4L * slots + (long)tokens * count + 2L * count;
        using var routing = NewScratch(intsAndFloats * 4);
        nint chosen = routing.Pointer, weights = chosen + slots * 4, slotOf = weights + slots * 4, groupRows = slotOf + slots * 4;
        nint probabilities = groupRows + slots * 4, counts = probabilities + (nint)tokens * count * 4, offsets = counts + count * 4;
        using var noise = secondChoiceNoise.IsEmpty ? default : UploadSmall(MemoryMarshal.AsBytes(secondChoiceNoise));
        int capacity = options.Routing == Runtime.Modules.MoeRoutingKind.DeepSpeed
            ? Runtime.Modules.MoeRouter.Capacity(tokens, count, k, options.EvalCapacityFactor, options.MinCapacity)
            : slots;
        Launch("moe_route_f32", 1, 1, 1, 1, 0, logits, KernelArg.Pointer(noise.Pointer), tokens, count, k,
            options.Routing == Runtime.Modules.MoeRoutingKind.Mixtral ? 0 : 1, capacity,
            KernelArg.Pointer(chosen), KernelArg.Pointer(weights), KernelArg.Pointer(probabilities), KernelArg.Pointer(counts),
            KernelArg.Pointer(offsets), KernelArg.Pointer(groupRows), KernelArg.Pointer(slotOf));
        if (onRouting is not null) ReadBackRouting(chosen, weights, slots, onRouting);

        // Expert products over the grouped slots; unused slots of the fixed-size buffers are never read.
        int hidden = experts.Hidden, outWidth = experts.OutFeatures;
        var a = Allocate(DType.F32, slots, hidden);
        GroupedGemv(input, groupRows, first, firstBias, counts, offsets, a, hidden, experts.InFeatures, count);
        if (second is not null)
        {
            var b = Allocate(DType.F32, slots, hidden);
            GroupedGemv(input, groupRows, second, null, counts, offsets, b, hidden, experts.InFeatures, count);
            Launch1D("swiglu_f32", a.Length, a, b, a, a.Length);
            b.Storage.Dispose();
        }
        else
        {
            Activate(a, experts.Activation, a);
        }
        var expertOut = Allocate(DType.F32, slots, outWidth);
        GroupedGemv(a, 0, down, downBias, counts, offsets, expertOut, outWidth, hidden, count);
        Launch1D("moe_combine_f32", (long)tokens * outWidth, expertOut, KernelArg.Pointer(slotOf), KernelArg.Pointer(weights), y, tokens, k, outWidth);
        a.Storage.Dispose();
        expertOut.Storage.Dispose();
    }

    private void GroupedGemv(Tensor x, nint rowOfSlot, ExpertTable weights, ExpertTable? bias, nint counts, nint offsets, Tensor y, int n, int k, int experts)
    {
        string kernel = weights.DType switch
        {
            DType.BF16 => "moe_gemv_bf16",
            DType.F16 => "moe_gemv_f16",
            _ => "moe_gemv_f32",
        };
        bool vector = weights.DType != DType.F32 && weights.Aligned && k % 8 == 0 && x.Data % 16 == 0;
        uint blocks = (uint)((n * 32L + ElementwiseBlock - 1) / ElementwiseBlock);
        Launch(kernel, blocks, (uint)experts, 1, ElementwiseBlock, 0, x, KernelArg.Pointer(rowOfSlot), KernelArg.Pointer(weights.Storage.Pointer),
            KernelArg.Pointer(bias?.Storage.Pointer ?? 0), KernelArg.Pointer(counts), KernelArg.Pointer(offsets), y, n, k, vector ? 1 : 0);
    }

    /// <summary>The device pointer table of one expert weight list, made on first use (never inside a graph capture).</summary>
    private ExpertTable Table(Tensor[] weights)
    {
        if (_expertTables.TryGetValue(weights, out var table)) return table;
        if (_capturing)
            throw new GraphSetupNeededException("the first use of an MoE layer's expert table uploads it, which is not recorded in a CUDA graph");
        var pointers = new long[weights.Length];
        bool aligned = true;
        for (int e = 0; e < weights.Length; e++)
        {
            Tensor w = ResolveWeight(weights[e]);
            pointers[e] = w.Data;
            aligned &= w.Data % 16 == 0;
        }
        var storage = NewStorage(pointers.Length * 8L);
        fixed (long* p = pointers) CopyHostToDevice((nint)p, storage.Pointer, pointers.Length * 8L);
        // The table holds raw pointers: keep the weight tensors' storages alive for as long as the table.
        table = new ExpertTable(storage, weights[0].DType, aligned);
        _expertTables.AddOrUpdate(weights, table);
        return table;
    }

    /// <summary>
    /// Queues a copy of the routing into pinned memory (allowed inside a graph capture) and hands it to
    /// <paramref name="onRouting"/> at the next synchronisation, so the host never waits for the router.
    /// </summary>
    private void ReadBackRouting(nint chosen, nint weights, int slots, Action<int[], float[]> onRouting)
    {
        nint staging = _arena.Take(slots * 8L);
        _driver.Check(_driver.cuMemcpyDtoHAsync((void*)staging, chosen, (nuint)(slots * 4), _stream), "cuMemcpyDtoHAsync (routing)");
        _driver.Check(_driver.cuMemcpyDtoHAsync((void*)(staging + slots * 4), weights, (nuint)(slots * 4), _stream), "cuMemcpyDtoHAsync (routing)");
        _afterSynchronize.Add(() =>
        {
            var c = new int[slots];
            var w = new float[slots];
            new ReadOnlySpan<int>((void*)staging, slots).CopyTo(c);
            new ReadOnlySpan<float>((void*)(staging + slots * 4), slots).CopyTo(w);
            onRouting(c, w);
        });
    }
}
