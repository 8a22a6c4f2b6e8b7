// Embedding lookup and the MoE dispatch / combine: row gathers and a weighted scatter-add. Row indices come
// from the host already validated; out-of-range rows are still skipped so a bad index can never read outside.

#define EMBEDDING_KERNEL(NAME, T, LOAD)                                                                        \
extern "C" __global__ void NAME(const T* table, const int* ids, float* y, int count, int cols, int vocab)     \
{                                                                                                              \
    long long total = (long long)count * cols;                                                                 \
    GRID_STRIDE(i, total)                                                                                      \
    {                                                                                                          \
        int row = (int)(i / cols), col = (int)(i % cols);                                                      \
        int id = ids[row];                                                                                     \
        y[i] = (id >= 0 && id < vocab) ? LOAD(table[(long long)id * cols + col]) : 0.0f;                       \
    }                                                                                                          \
}

__device__ __forceinline__ float load_f32(float v) { return v; }
EMBEDDING_KERNEL(embedding_f32, float, load_f32)
EMBEDDING_KERNEL(embedding_bf16, bf16_t, bf16_to_float)
EMBEDDING_KERNEL(embedding_f16, f16_t, f16_to_float)

// destination[i] = source[rows[i]]
extern "C" __global__ void gather_rows_f32(const float* source, const int* rows, float* destination, int count, int cols, int sourceRows)
{
    long long total = (long long)count * cols;
    GRID_STRIDE(i, total)
    {
        int r = rows[i / cols];
        destination[i] = (r >= 0 && r < sourceRows) ? source[(long long)r * cols + i % cols] : 0.0f;
    }
}

// destination[rows[i]] += weights[i] * source[i]. One thread per column walks i in order, so repeated rows
// accumulate in a fixed order: deterministic, unlike atomics.
extern "C" __global__ void scatter_add_rows_f32(const float* source, const int* rows, const float* weights, float* destination,
                                                int count, int cols, int destinationRows)
{
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    for (int i = 0; i < count; i++)
    {
        int r = rows[i];
        if (r >= 0 && r < destinationRows)
            destination[(long long)r * cols + col] += weights[i] * source[(long long)i * cols + col];
    }
}
