// Scaled dot-product attention over f32 q [Tq, heads*D] and k, v [Tk, kvHeads*D] (grouped-query when kvHeads < heads).
// Keys and values are f32 or bf16 (the KV cache of a bf16 model, rounded to nearest even as it is stored); every
// kernel has both forms, `_f32` and `_bf16` (the suffix names the key/value type; q, y and all arithmetic are f32).
// With causal set, query row i sits at absolute position query_start + i and sees keys 0 .. query_start + i.

__device__ __forceinline__ int visible_keys(int tk, int causal, int query_start, int query_row)
{
    return causal ? min(tk, query_start + query_row + 1) : tk;
}

__device__ __forceinline__ float kv_load(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float kv_load(const bf16_t* p, long long i) { return bf16_to_float(p[i]); }

// Simple kernel: one block per (query row, head); all scores in dynamic shared memory (tk + D floats). Used for
// prefill only where the tiled kernel's tiles do not fit in shared memory (very large head dims).
template <typename KV>
__device__ void attention_rows(const float* q, const KV* k, const KV* v, float* y,
                               int tk, int heads, int kv_heads, int head_dim, int causal, int query_start, float scale)
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
        long long base = (long long)j * kvWidth + kvHead * head_dim;
        float s = 0.0f;
        for (int d = 0; d < head_dim; d++) s += qs[d] * kv_load(k, base + d);
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
        for (int j = 0; j < keys; j++) acc += scores[j] * kv_load(v, (long long)j * kvWidth + kvHead * head_dim + d);
        out[d] = acc * inv;
    }
}

extern "C" __global__ void attention_rows_f32(const float* q, const float* k, const float* v, float* y, int tk, int heads,
                                              int kv_heads, int head_dim, int causal, int query_start, float scale)
{
    attention_rows<float>(q, k, v, y, tk, heads, kv_heads, head_dim, causal, query_start, scale);
}

extern "C" __global__ void attention_rows_bf16(const float* q, const bf16_t* k, const bf16_t* v, float* y, int tk, int heads,
                                               int kv_heads, int head_dim, int causal, int query_start, float scale)
{
    attention_rows<bf16_t>(q, k, v, y, tk, heads, kv_heads, head_dim, causal, query_start, scale);
}

// Tiled prefill (flash-attention style): grid (ceil(Tq / q_tile), heads). A block keeps q_tile query rows of one
// head in shared memory and walks the keys in tiles of k_tile rows: each key and value tile is read from global
// memory once for all q_tile queries (the simple kernel reads every key once per query row), the scores of the
// tile go to shared memory, and an online softmax (running max m, running sum l, output rescaled by
// exp(m_old − m_new)) accumulates the output without ever holding a whole score row. Keys past the last visible
// key of the tile's last query row are never loaded.
// Dynamic shared memory, in floats: Q q_tile·D, K k_tile·(D+1) (padded against bank conflicts), V k_tile·D,
// S q_tile·k_tile, O q_tile·D, and m, l, alpha q_tile each (the host computes the same sum).
template <typename KV>
__device__ void attention_tiled(const float* q, const KV* k, const KV* v, float* y, int tq, int tk, int heads, int kv_heads,
                                int head_dim, int causal, int query_start, float scale, int q_tile, int k_tile)
{
    extern __shared__ float shared[];
    const int D = head_dim, kStride = head_dim + 1;
    float* Qs = shared;
    float* Ks = Qs + q_tile * D;
    float* Vs = Ks + k_tile * kStride;
    float* S = Vs + k_tile * D;
    float* O = S + q_tile * k_tile;
    float* M = O + q_tile * D;
    float* L = M + q_tile;
    float* Alpha = L + q_tile;
    int head = blockIdx.y, row0 = blockIdx.x * q_tile;
    int rows = min(q_tile, tq - row0);
    int kvHead = head / (heads / kv_heads);
    int qWidth = heads * D, kvWidth = kv_heads * D;

    for (int i = threadIdx.x; i < q_tile * D; i += blockDim.x)
    {
        int r = i / D, d = i % D;
        Qs[i] = r < rows ? q[(long long)(row0 + r) * qWidth + head * D + d] * scale : 0.0f;
        O[i] = 0.0f;
    }
    for (int r = threadIdx.x; r < q_tile; r += blockDim.x) { M[r] = -INFINITY; L[r] = 0.0f; }
    int keyEnd = causal ? min(tk, query_start + row0 + rows) : tk;

    for (int tile = 0; tile < keyEnd; tile += k_tile)
    {
        int n = min(k_tile, keyEnd - tile);
        __syncthreads(); // the previous tile's K, V and S are no longer read
        for (int i = threadIdx.x; i < n * D; i += blockDim.x)
        {
            int j = i / D, d = i % D;
            long long at = (long long)(tile + j) * kvWidth + kvHead * D + d;
            Ks[j * kStride + d] = kv_load(k, at);
            Vs[j * D + d] = kv_load(v, at);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < q_tile * k_tile; i += blockDim.x)
        {
            int r = i / k_tile, j = i % k_tile;
            bool visible = r < rows && j < n && (!causal || tile + j <= query_start + row0 + r);
            float s = -INFINITY;
            if (visible)
            {
                s = 0.0f;
                for (int d = 0; d < D; d++) s += Qs[r * D + d] * Ks[j * kStride + d];
            }
            S[i] = s;
        }
        __syncthreads();
        for (int r = threadIdx.x; r < q_tile; r += blockDim.x)
        {
            float mOld = M[r], tileMax = -INFINITY;
            for (int j = 0; j < n; j++) tileMax = fmaxf(tileMax, S[r * k_tile + j]);
            float mNew = fmaxf(mOld, tileMax);
            float alpha = 1.0f, sum = 0.0f;
            if (mNew == -INFINITY)
            {
                for (int j = 0; j < k_tile; j++) S[r * k_tile + j] = 0.0f; // nothing visible yet
            }
            else
            {
                alpha = mOld == -INFINITY ? 0.0f : expf(mOld - mNew);
                for (int j = 0; j < k_tile; j++)
                {
                    float s = S[r * k_tile + j];
                    float p = (j < n && s != -INFINITY) ? expf(s - mNew) : 0.0f;
                    S[r * k_tile + j] = p;
                    sum += p;
                }
            }
            L[r] = L[r] * alpha + sum;
            M[r] = mNew;
            Alpha[r] = alpha;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < q_tile * D; i += blockDim.x)
        {
            int r = i / D, d = i % D;
            float acc = O[i] * Alpha[r];
            for (int j = 0; j < n; j++) acc += S[r * k_tile + j] * Vs[j * D + d];
            O[i] = acc;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < rows * D; i += blockDim.x)
    {
        int r = i / D, d = i % D;
        float l = L[r];
        y[(long long)(row0 + r) * qWidth + head * D + d] = l > 0.0f ? O[i] / l : 0.0f;
    }
}

extern "C" __global__ void attention_tiled_f32(const float* q, const float* k, const float* v, float* y, int tq, int tk, int heads,
                                               int kv_heads, int head_dim, int causal, int query_start, float scale, int q_tile, int k_tile)
{
    attention_tiled<float>(q, k, v, y, tq, tk, heads, kv_heads, head_dim, causal, query_start, scale, q_tile, k_tile);
}

extern "C" __global__ void attention_tiled_bf16(const float* q, const bf16_t* k, const bf16_t* v, float* y, int tq, int tk, int heads,
                                                int kv_heads, int head_dim, int causal, int query_start, float scale, int q_tile, int k_tile)
{
    attention_tiled<bf16_t>(q, k, v, y, tq, tk, heads, kv_heads, head_dim, causal, query_start, scale, q_tile, k_tile);
}

// Flash-decoding, pass 1: grid (splits, heads, Tq). Block s handles keys [s*chunk, (s+1)*chunk) of one query row
// and head and writes its running max, exp-sum and unnormalised output to the partial buffers
// (layout [Tq, heads, splits] for max and sum, [Tq, heads, splits, D] for the output).
// Dynamic shared memory: D + chunk floats.
template <typename KV>
__device__ void attention_split(const float* q, const KV* k, const KV* v, float* partial_max, float* partial_sum, float* partial_out,
                                int tk, int heads, int kv_heads, int head_dim, int causal, int query_start, float scale, int chunk)
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
        long long base = (long long)j * kvWidth + kvHead * head_dim;
        float s = 0.0f;
        for (int d = lane; d < head_dim; d += 32) s += qs[d] * kv_load(k, base + d);
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
        for (int j = begin; j < end; j++) acc += scores[j - begin] * kv_load(v, (long long)j * kvWidth + kvHead * head_dim + d);
        out[d] = acc;
    }
    if (threadIdx.x == 0) { partial_max[slot] = m; partial_sum[slot] = sum; }
}

extern "C" __global__ void attention_split_f32(const float* q, const float* k, const float* v,
                                               float* partial_max, float* partial_sum, float* partial_out,
                                               int tk, int heads, int kv_heads, int head_dim,
                                               int causal, int query_start, float scale, int chunk)
{
    attention_split<float>(q, k, v, partial_max, partial_sum, partial_out, tk, heads, kv_heads, head_dim, causal, query_start, scale, chunk);
}

extern "C" __global__ void attention_split_bf16(const float* q, const bf16_t* k, const bf16_t* v,
                                                float* partial_max, float* partial_sum, float* partial_out,
                                                int tk, int heads, int kv_heads, int head_dim,
                                                int causal, int query_start, float scale, int chunk)
{
    attention_split<bf16_t>(q, k, v, partial_max, partial_sum, partial_out, tk, heads, kv_heads, head_dim, causal, query_start, scale, chunk);
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
