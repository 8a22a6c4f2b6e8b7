// The sparse MoE layer on the device, so that a decode step needs no host synchronisation (and fits in a CUDA
// graph): routing with capacity and grouping by expert (moe_route_f32), the expert products through the grouped
// GEMV kernels in gemv.cu (moe_gemv_*), and the weighted combine (moe_combine_f32). All buffers have fixed sizes
// (tokens·k slots), whatever the routing turns out to be.

#define MOE_ROUTING_MIXTRAL 0
#define MOE_ROUTING_DEEPSPEED 1

// torch.finfo(torch.float32).eps: DeepSpeed's floor on the sum of the two kept top-2 weights.
#define MOE_F32_EPSILON 1.1920929e-07f

__device__ int moe_argmax(const float* p, int experts, int exclude)
{
    int best = -1;
    for (int e = 0; e < experts; e++)
    {
        if (e == exclude) continue;
        if (best < 0 || p[e] > p[best]) best = e;
    }
    return best;
}

// One thread does it all, in the order of MoeRouter.Route on the host (Runtime/Modules/MoeRouter.cs), which it
// mirrors line by line: decode routes 1..8 tokens over a handful of experts, so a serial pass is a few hundred
// operations and keeps the order-dependent parts (capacity slots in token order, first choices before second
// choices; grouping in token order) simple and deterministic.
//   logits [tokens, experts]; noise [tokens, experts] or null (DeepSpeed top-2 sampled second choice: the host
//   draws the Gumbel noise in the order the host router would);
//   out: chosen / weights [tokens, k] (−1 / 0 when dropped by capacity), probabilities [tokens, experts],
//   counts / offsets [experts] (kept slots per expert, exclusive prefix sum), group_rows [tokens·k] (token of
//   each grouped slot, expert by expert, token order within an expert), slot_of [tokens, k] (grouped slot of
//   each choice, −1 when dropped).
extern "C" __global__ void moe_route_f32(const float* logits, const float* noise, int tokens, int experts, int k, int kind,
                                         int capacity, int* chosen, float* weights, float* probabilities, int* counts,
                                         int* offsets, int* group_rows, int* slot_of)
{
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    for (int t = 0; t < tokens; t++)
    {
        const float* x = logits + (long long)t * experts;
        float* p = probabilities + (long long)t * experts;
        float m = -INFINITY;
        for (int e = 0; e < experts; e++) m = fmaxf(m, x[e]);
        float sum = 0.0f;
        for (int e = 0; e < experts; e++) { p[e] = expf(x[e] - m); sum += p[e]; }
        for (int e = 0; e < experts; e++) p[e] /= sum;
    }

    if (kind == MOE_ROUTING_MIXTRAL)
    {
        for (int t = 0; t < tokens; t++)
        {
            const float* p = probabilities + (long long)t * experts;
            float sum = 0.0f;
            for (int j = 0; j < k; j++)
            {
                int best = -1;
                for (int e = 0; e < experts; e++)
                {
                    bool taken = false;
                    for (int i = 0; i < j; i++) taken |= chosen[t * k + i] == e;
                    if (taken) continue;
                    if (best < 0 || p[e] > p[best]) best = e;
                }
                chosen[t * k + j] = best;
                weights[t * k + j] = p[best];
                sum += p[best];
            }
            for (int j = 0; j < k; j++) weights[t * k + j] /= sum;
        }
    }
    else
    {
        for (int t = 0; t < tokens; t++) chosen[t * k] = moe_argmax(probabilities + (long long)t * experts, experts, -1);
        if (k == 2)
        {
            for (int t = 0; t < tokens; t++)
            {
                int first = chosen[t * 2], second = -1;
                if (noise != 0)
                {
                    float best = -INFINITY;
                    for (int e = 0; e < experts; e++)
                    {
                        float noisy = logits[(long long)t * experts + e] + noise[(long long)t * experts + e];
                        if (e != first && (second < 0 || noisy > best)) { best = noisy; second = e; }
                    }
                }
                else
                {
                    second = moe_argmax(probabilities + (long long)t * experts, experts, first);
                }
                chosen[t * 2 + 1] = second;
            }
        }
        // Capacity: every expert's slots go to first choices in token order, then to second choices. For top-1 this
        // keeps the earliest tokens (the host's deterministic policy; the sampled one never reaches the device
        // unless no token can be dropped).
        for (int e = 0; e < experts; e++) counts[e] = 0;
        for (int choice = 0; choice < k; choice++)
            for (int t = 0; t < tokens; t++)
            {
                int e = chosen[t * k + choice];
                if (e < 0) continue;
                if (counts[e]++ >= capacity) chosen[t * k + choice] = -1;
            }
        if (k == 1)
        {
            for (int t = 0; t < tokens; t++)
                weights[t] = chosen[t] >= 0 ? probabilities[(long long)t * experts + chosen[t]] : 0.0f;
        }
        else
        {
            for (int t = 0; t < tokens; t++)
            {
                int e1 = chosen[t * 2], e2 = chosen[t * 2 + 1];
                float w1 = e1 >= 0 ? probabilities[(long long)t * experts + e1] : 0.0f;
                float w2 = e2 >= 0 ? probabilities[(long long)t * experts + e2] : 0.0f;
                float denominator = fmaxf(w1 + w2, MOE_F32_EPSILON);
                weights[t * 2] = w1 / denominator;
                weights[t * 2 + 1] = w2 / denominator;
            }
        }
    }

    // Group the kept choices by expert (counting sort, token order within each expert).
    for (int e = 0; e < experts; e++) counts[e] = 0;
    for (int i = 0; i < tokens * k; i++) if (chosen[i] >= 0) counts[chosen[i]]++;
    int offset = 0;
    for (int e = 0; e < experts; e++) { offsets[e] = offset; offset += counts[e]; counts[e] = 0; }
    for (int t = 0; t < tokens; t++)
        for (int j = 0; j < k; j++)
        {
            int e = chosen[t * k + j];
            if (e < 0) { slot_of[t * k + j] = -1; continue; }
            int slot = offsets[e] + counts[e]++;
            group_rows[slot] = t;
            slot_of[t * k + j] = slot;
        }
}

// y[t, c] = Σ_j weights[t, j] · expert_out[slot_of[t, j], c] over the kept choices, in choice order; y is written,
// not accumulated, so it needs no zeroing.
extern "C" __global__ void moe_combine_f32(const float* expert_out, const int* slot_of, const float* weights, float* y,
                                           int tokens, int k, int cols)
{
    long long total = (long long)tokens * cols;
    GRID_STRIDE(i, total)
    {
        int t = (int)(i / cols), c = (int)(i % cols);
        float acc = 0.0f;
        for (int j = 0; j < k; j++)
        {
            int slot = slot_of[t * k + j];
            if (slot >= 0) acc += weights[t * k + j] * expert_out[(long long)slot * cols + c];
        }
        y[i] = acc;
    }
}
