// Skinny GEMM for decode (M <= 8 activation rows): y[m, n] = x[m, :] . W[n, :] (+ bias[n]), f32 accumulation.
// One warp per output column n reads the weight row once for all M rows; this is the memory-bound path
// where cuBLAS (which needs x converted to the weight dtype) is slower. Vectorised 16-byte weight loads when
// K is a multiple of 8 and the weights are 16-byte aligned (checked on the host: `vector` flag).

#define GEMV_MAX_ROWS 8

__device__ __forceinline__ void unpack8_bf16(uint4 p, float* w)
{
    unsigned int words[4] = { p.x, p.y, p.z, p.w };
    for (int i = 0; i < 4; i++)
    {
        w[2 * i] = __uint_as_float(words[i] << 16);
        w[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
    }
}

__device__ __forceinline__ void unpack8_f16(uint4 p, float* w)
{
    unsigned int words[4] = { p.x, p.y, p.z, p.w };
    for (int i = 0; i < 4; i++)
    {
        w[2 * i] = f16_to_float((f16_t)(words[i] & 0xffffu));
        w[2 * i + 1] = f16_to_float((f16_t)(words[i] >> 16));
    }
}

#define GEMV16_KERNEL(NAME, T, LOAD, UNPACK)                                                                   \
extern "C" __global__ void NAME(const float* x, const T* w, const float* bias, float* y, int rows, int n, int k, int vector) \
{                                                                                                              \
    int column = (int)(((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5);                               \
    int lane = threadIdx.x & 31;                                                                               \
    if (column >= n) return;                                                                                   \
    const T* wRow = w + (long long)column * k;                                                                 \
    float acc[GEMV_MAX_ROWS];                                                                                  \
    _Pragma("unroll") for (int m = 0; m < GEMV_MAX_ROWS; m++) acc[m] = 0.0f;                                   \
    if (vector)                                                                                                \
    {                                                                                                          \
        const uint4* wVec = (const uint4*)wRow;                                                                \
        /* Unrolled so several 16-byte weight loads are in flight per lane: decode is bandwidth bound. */      \
        _Pragma("unroll 4") for (int kv = lane; kv < k / 8; kv += 32)                                          \
        {                                                                                                      \
            float wv[8];                                                                                       \
            UNPACK(wVec[kv], wv);                                                                              \
            _Pragma("unroll") for (int m = 0; m < GEMV_MAX_ROWS; m++)                                          \
            {                                                                                                  \
                if (m < rows)                                                                                  \
                {                                                                                              \
                    const float4* xv = (const float4*)(x + (long long)m * k + kv * 8);                         \
                    float4 a = xv[0], b = xv[1];                                                               \
                    acc[m] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w                            \
                            + wv[4] * b.x + wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;                           \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    else                                                                                                       \
    {                                                                                                          \
        for (int i = lane; i < k; i += 32)                                                                     \
        {                                                                                                      \
            float wv = LOAD(wRow[i]);                                                                          \
            _Pragma("unroll") for (int m = 0; m < GEMV_MAX_ROWS; m++)                                          \
                if (m < rows) acc[m] += wv * x[(long long)m * k + i];                                          \
        }                                                                                                      \
    }                                                                                                          \
    _Pragma("unroll") for (int m = 0; m < GEMV_MAX_ROWS; m++)                                                  \
    {                                                                                                          \
        float s = warp_sum(acc[m]);                                                                            \
        if (lane == 0 && m < rows) y[(long long)m * n + column] = s + (bias != 0 ? bias[column] : 0.0f);        \
    }                                                                                                          \
}

GEMV16_KERNEL(gemv_bf16, bf16_t, bf16_to_float, unpack8_bf16)
GEMV16_KERNEL(gemv_f16, f16_t, f16_to_float, unpack8_f16)

extern "C" __global__ void gemv_f32(const float* x, const float* w, const float* bias, float* y, int rows, int n, int k)
{
    int column = (int)(((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    if (column >= n) return;
    const float* wRow = w + (long long)column * k;
    float acc[GEMV_MAX_ROWS];
#pragma unroll
    for (int m = 0; m < GEMV_MAX_ROWS; m++) acc[m] = 0.0f;
    for (int i = lane; i < k; i += 32)
    {
        float wv = wRow[i];
#pragma unroll
        for (int m = 0; m < GEMV_MAX_ROWS; m++)
            if (m < rows) acc[m] += wv * x[(long long)m * k + i];
    }
#pragma unroll
    for (int m = 0; m < GEMV_MAX_ROWS; m++)
    {
        float s = warp_sum(acc[m]);
        if (lane == 0 && m < rows) y[(long long)m * n + column] = s + (bias != 0 ? bias[column] : 0.0f);
    }
}

// Grouped expert GEMV for the device MoE layer (moe.cu): grid (ceil(n·32 / blockDim), experts). Block column e
// runs expert e on its grouped slots [offsets[e], offsets[e] + counts[e]) (read from device memory: the routing is
// decided on the device), at most GEMV_MAX_ROWS slots per pass over the weight rows, so only the experts that
// received tokens read their weights. weight_table / bias_table hold one device pointer per expert (bias_table
// may be null). Input row of slot s: x[row_of_slot[s]] when row_of_slot is given (gathering the tokens), else x[s].
// Output: y[s, column].
#define MOE_GEMV16_KERNEL(NAME, T, LOAD, UNPACK)                                                               \
extern "C" __global__ void NAME(const float* x, const int* row_of_slot, const unsigned long long* weight_table, \
                                const unsigned long long* bias_table, const int* counts, const int* offsets,   \
                                float* y, int n, int k, int vector)                                            \
{                                                                                                              \
    int expert = blockIdx.y;                                                                                   \
    int count = counts[expert];                                                                                \
    int column = (int)(((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5);                               \
    int lane = threadIdx.x & 31;                                                                               \
    if (count == 0 || column >= n) return;                                                                     \
    const T* wRow = (const T*)weight_table[expert] + (long long)column * k;                                    \
    const float* bias = bias_table != 0 ? (const float*)bias_table[expert] : 0;                                \
    int first = offsets[expert];                                                                               \
    for (int done = 0; done < count; done += GEMV_MAX_ROWS)                                                    \
    {                                                                                                          \
        int rows = min(GEMV_MAX_ROWS, count - done);                                                           \
        const float* xr[GEMV_MAX_ROWS];                                                                        \
        float acc[GEMV_MAX_ROWS];                                                                              \
        _Pragma("unroll") for (int m = 0; m < GEMV_MAX_ROWS; m++)                                              \
        {                                                                                                      \
            int slot = first + done + (m < rows ? m : 0);                                                      \
            xr[m] = x + (long long)(row_of_slot != 0 ? row_of_slot[slot] : slot) * k;                          \
            acc[m] = 0.0f;                                                                                     \
        }                                                                                                      \
        if (vector)                                                                                            \
        {                                                                                                      \
            const uint4* wVec = (const uint4*)wRow;                                                            \
            _Pragma("unroll 4") for (int kv = lane; kv < k / 8; kv += 32)                                      \
            {                                                                                                  \
                float wv[8];                                                                                   \
                UNPACK(wVec[kv], wv);                                                                          \
                _Pragma("unroll") for (int m = 0; m < GEMV_MAX_ROWS; m++)                                      \
                {                                                                                              \
                    if (m < rows)                                                                              \
                    {                                                                                          \
                        const float4* xv = (const float4*)(xr[m] + kv * 8);                                    \
                        float4 a = xv[0], b = xv[1];                                                           \
                        acc[m] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w                        \
                                + wv[4] * b.x + wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;                       \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        else                                                                                                   \
        {                                                                                                      \
            for (int i = lane; i < k; i += 32)                                                                 \
            {                                                                                                  \
                float wv = LOAD(wRow[i]);                                                                      \
                _Pragma("unroll") for (int m = 0; m < GEMV_MAX_ROWS; m++)                                      \
                    if (m < rows) acc[m] += wv * xr[m][i];                                                     \
            }                                                                                                  \
        }                                                                                                      \
        _Pragma("unroll") for (int m = 0; m < GEMV_MAX_ROWS; m++)                                              \
        {                                                                                                      \
            float s = warp_sum(acc[m]);                                                                        \
            if (lane == 0 && m < rows)                                                                         \
                y[(long long)(first + done + m) * n + column] = s + (bias != 0 ? bias[column] : 0.0f);         \
        }                                                                                                      \
    }                                                                                                          \
}

MOE_GEMV16_KERNEL(moe_gemv_bf16, bf16_t, bf16_to_float, unpack8_bf16)
MOE_GEMV16_KERNEL(moe_gemv_f16, f16_t, f16_to_float, unpack8_f16)

extern "C" __global__ void moe_gemv_f32(const float* x, const int* row_of_slot, const unsigned long long* weight_table,
                                        const unsigned long long* bias_table, const int* counts, const int* offsets,
                                        float* y, int n, int k, int vector)
{
    int expert = blockIdx.y;
    int count = counts[expert];
    int column = (int)(((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    if (count == 0 || column >= n) return;
    const float* wRow = (const float*)weight_table[expert] + (long long)column * k;
    const float* bias = bias_table != 0 ? (const float*)bias_table[expert] : 0;
    int first = offsets[expert];
    for (int done = 0; done < count; done++)
    {
        int slot = first + done;
        const float* xr = x + (long long)(row_of_slot != 0 ? row_of_slot[slot] : slot) * k;
        float acc = 0.0f;
        for (int i = lane; i < k; i += 32) acc += wRow[i] * xr[i];
        float s = warp_sum(acc);
        if (lane == 0) y[(long long)slot * n + column] = s + (bias != 0 ? bias[column] : 0.0f);
    }
}
