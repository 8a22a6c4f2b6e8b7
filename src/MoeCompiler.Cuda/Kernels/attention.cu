// Scaled dot-product attention over f32 q [Tq, heads*D] and k, v [Tk, kvHeads*D] (grouped-query when kvHeads < heads).
// With causal set, query row i sits at absolute position query_start + i and sees keys 0 .. query_start + i.

__device__ __forceinline__ int visible_keys(int tk, int causal, int query_start, int query_row)
{
    return causal ? min(tk, query_start + query_row + 1) : tk;
}

// Simple prefill kernel: one block per (query row, head); all scores in dynamic shared memory (tk + D floats).
extern "C" __global__ void attention_rows_f32(const float* q, const float* k, const float* v, float* y,
                                              int tk, int heads, int kv_heads, int head_dim,
                                              int causal, int query_start, float scale)
{
    extern __shared__ float shared[];
    __shared__ float scratch[32];
    float* qs = shared;
    float* scores = shared + head_dim;
    int row = blockIdx.x, head = blockIdx.y;
    int kvHead = head / (heads / kv_heads);
    int qWidth = heads * head_dim, kvWidth = kv_heads * head_dim;
    const float* qRow = q + (long long)row * qWidth + head * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) qs[d] = qRow[d] * scale;
    __syncthreads();
    int keys = visible_keys(tk, causal, query_start, row);
    float localMax = -INFINITY;
    for (int j = threadIdx.x; j < keys; j += blockDim.x)
    {
        const float* kRow = k + (long long)j * kvWidth + kvHead * head_dim;
        float s = 0.0f;
        for (int d = 0; d < head_dim; d++) s += qs[d] * kRow[d];
        scores[j] = s;
        localMax = fmaxf(localMax, s);
    }
    float m = block_max(localMax, scratch);
    float localSum = 0.0f;
    for (int j = threadIdx.x; j < keys; j += blockDim.x)
    {
        float p = expf(scores[j] - m);
        scores[j] = p;
        localSum += p;
    }
    float sum = block_sum(localSum, scratch);
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    float* out = y + (long long)row * qWidth + head * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
    {
        float acc = 0.0f;
        for (int j = 0; j < keys; j++) acc += scores[j] * v[(long long)j * kvWidth + kvHead * head_dim + d];
        out[d] = acc * inv;
    }
}

// Flash-decoding, pass 1: grid (splits, heads, Tq). Block s handles keys [s*chunk, (s+1)*chunk) of one query row
// and head and writes its running max, exp-sum and unnormalised output to the partial buffers
// (layout [Tq, heads, splits] for max and sum, [Tq, heads, splits, D] for the output).
// Dynamic shared memory: D + chunk floats.
extern "C" __global__ void attention_split_f32(const float* q, const float* k, const float* v,
                                               float* partial_max, float* partial_sum, float* partial_out,
                                               int tk, int heads, int kv_heads, int head_dim,
                                               int causal, int query_start, float scale, int chunk)
{
    extern __shared__ float shared[];
    __shared__ float scratch[32];
    float* qs = shared;
    float* scores = shared + head_dim;
    int split = blockIdx.x, head = blockIdx.y, row = blockIdx.z, splits = gridDim.x;
    int kvHead = head / (heads / kv_heads);
    int qWidth = heads * head_dim, kvWidth = kv_heads * head_dim;
    const float* qRow = q + (long long)row * qWidth + head * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) qs[d] = qRow[d] * scale;
    __syncthreads();
    int keys = visible_keys(tk, causal, query_start, row);
    int begin = split * chunk, end = min(keys, begin + chunk);
    long long slot = ((long long)row * heads + head) * splits + split;
    float* out = partial_out + slot * head_dim;
    if (begin >= end)
    {
        if (threadIdx.x == 0) { partial_max[slot] = -INFINITY; partial_sum[slot] = 0.0f; }
        for (int d = threadIdx.x; d < head_dim; d += blockDim.x) out[d] = 0.0f;
        return;
    }
    // One warp per key keeps the K reads coalesced along the head dimension.
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int j = begin + warp; j < end; j += warps)
    {
        const float* kRow = k + (long long)j * kvWidth + kvHead * head_dim;
        float s = 0.0f;
        for (int d = lane; d < head_dim; d += 32) s += qs[d] * kRow[d];
        s = warp_sum(s);
        if (lane == 0) scores[j - begin] = s;
    }
    __syncthreads();
    float localMax = -INFINITY;
    for (int j = threadIdx.x; j < end - begin; j += blockDim.x) localMax = fmaxf(localMax, scores[j]);
    float m = block_max(localMax, scratch);
    float localSum = 0.0f;
    for (int j = threadIdx.x; j < end - begin; j += blockDim.x)
    {
        float p = expf(scores[j] - m);
        scores[j] = p;
        localSum += p;
    }
    float sum = block_sum(localSum, scratch);
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
    {
        float acc = 0.0f;
        for (int j = begin; j < end; j++) acc += scores[j - begin] * v[(long long)j * kvWidth + kvHead * head_dim + d];
        out[d] = acc;
    }
    if (threadIdx.x == 0) { partial_max[slot] = m; partial_sum[slot] = sum; }
}

// Flash-decoding, pass 2: grid (heads, Tq), one thread per output dimension; rescales and sums the splits.
extern "C" __global__ void attention_combine_f32(const float* partial_max, const float* partial_sum, const float* partial_out,
                                                 float* y, int heads, int head_dim, int splits)
{
    int head = blockIdx.x, row = blockIdx.y;
    long long first = ((long long)row * heads + head) * splits;
    float m = -INFINITY;
    for (int s = 0; s < splits; s++) m = fmaxf(m, partial_max[first + s]);
    float total = 0.0f;
    for (int s = 0; s < splits; s++)
        if (partial_sum[first + s] > 0.0f) total += partial_sum[first + s] * expf(partial_max[first + s] - m);
    float inv = total > 0.0f ? 1.0f / total : 0.0f;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
    {
        float acc = 0.0f;
        for (int s = 0; s < splits; s++)
            if (partial_sum[first + s] > 0.0f) acc += partial_out[(first + s) * head_dim + d] * expf(partial_max[first + s] - m);
        y[(long long)row * heads * head_dim + head * head_dim + d] = acc * inv;
    }
}
