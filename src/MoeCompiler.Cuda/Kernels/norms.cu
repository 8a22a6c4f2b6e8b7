// Row normalisations: one block per row, two passes (mean, then centred variance) for accuracy. y may alias x.

extern "C" __global__ void layer_norm_f32(const float* x, const float* weight, const float* bias, float* y, int cols, float epsilon)
{
    __shared__ float scratch[32];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out = y + (long long)blockIdx.x * cols;
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) sum += row[c];
    float mean = block_sum(sum, scratch) / cols;
    float squares = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
    {
        float d = row[c] - mean;
        squares += d * d;
    }
    float inv = rsqrtf(block_sum(squares, scratch) / cols + epsilon);
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
    {
        float v = (row[c] - mean) * inv * weight[c];
        out[c] = bias != 0 ? v + bias[c] : v;
    }
}

extern "C" __global__ void rms_norm_f32(const float* x, const float* weight, float* y, int cols, float epsilon)
{
    __shared__ float scratch[32];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out = y + (long long)blockIdx.x * cols;
    float squares = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) squares += row[c] * row[c];
    float inv = rsqrtf(block_sum(squares, scratch) / cols + epsilon);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[c] = row[c] * inv * weight[c];
}
