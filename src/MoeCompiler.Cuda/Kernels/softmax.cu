// Softmax over rows (one block per row), and the MoE router's softmax + top-k.

extern "C" __global__ void softmax_rows_f32(const float* x, float* y, int cols)
{
    __shared__ float scratch[32];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out = y + (long long)blockIdx.x * cols;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, row[c]);
    m = block_max(m, scratch);
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) sum += expf(row[c] - m);
    float inv = 1.0f / block_sum(sum, scratch);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[c] = expf(row[c] - m) * inv;
}

// Per token row: softmax over the experts' logits, then the k largest probabilities (ties to the lower index,
// as torch.topk on CPU), optionally renormalised to sum to one (Mixtral). One thread per row: experts are few.
extern "C" __global__ void router_topk_f32(const float* logits, int rows, int experts, int k, int renormalize,
                                           int* indices, float* weights)
{
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* row = logits + (long long)r * experts;
    float m = -INFINITY;
    for (int e = 0; e < experts; e++) m = fmaxf(m, row[e]);
    float sum = 0.0f;
    for (int e = 0; e < experts; e++) sum += expf(row[e] - m);
    float chosenSum = 0.0f;
    for (int j = 0; j < k; j++)
    {
        int best = -1;
        float bestValue = -INFINITY;
        for (int e = 0; e < experts; e++)
        {
            bool taken = false;
            for (int p = 0; p < j; p++) taken |= indices[(long long)r * k + p] == e;
            if (!taken && (best < 0 || row[e] > bestValue)) { best = e; bestValue = row[e]; }
        }
        float probability = expf(bestValue - m) / sum;
        indices[(long long)r * k + j] = best;
        weights[(long long)r * k + j] = probability;
        chosenSum += probability;
    }
    if (renormalize)
        for (int j = 0; j < k; j++) weights[(long long)r * k + j] /= chosenSum;
}
