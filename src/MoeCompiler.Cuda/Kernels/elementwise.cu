// Elementwise arithmetic, activations and dtype conversions over flat f32 arrays (outputs may alias inputs).

extern "C" __global__ void add_f32(const float* a, const float* b, float* y, long long n)
{
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

extern "C" __global__ void mul_f32(const float* a, const float* b, float* y, long long n)
{
    GRID_STRIDE(i, n) y[i] = a[i] * b[i];
}

extern "C" __global__ void scale_f32(const float* x, float scale, float* y, long long n)
{
    GRID_STRIDE(i, n) y[i] = x[i] * scale;
}

// y[r, c] += bias[c]
extern "C" __global__ void add_bias_rows_f32(float* y, const float* bias, long long n, int cols)
{
    GRID_STRIDE(i, n) y[i] += bias[i % cols];
}

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// kind: 0 GELU (erf), 1 GELU (tanh approximation), 2 quick GELU x·σ(1.702x), 3 SiLU. Matches the Activation enum.
extern "C" __global__ void activate_f32(const float* x, float* y, long long n, int kind)
{
    GRID_STRIDE(i, n)
    {
        float v = x[i], r;
        switch (kind)
        {
            case 0: r = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
            case 1:
            {
                const float k = 0.79788456080286536f; // sqrt(2/pi)
                r = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
                break;
            }
            case 2: r = v * sigmoid(1.702f * v); break;
            default: r = v * sigmoid(v); break;
        }
        y[i] = r;
    }
}

// y = silu(gate) * up
extern "C" __global__ void swiglu_f32(const float* gate, const float* up, float* y, long long n)
{
    GRID_STRIDE(i, n)
    {
        float g = gate[i];
        y[i] = g * sigmoid(g) * up[i];
    }
}

extern "C" __global__ void convert_f32_to_bf16(const float* x, bf16_t* y, long long n)
{
    GRID_STRIDE(i, n) y[i] = float_to_bf16(x[i]);
}

extern "C" __global__ void convert_f32_to_f16(const float* x, f16_t* y, long long n)
{
    GRID_STRIDE(i, n) y[i] = float_to_f16(x[i]);
}

extern "C" __global__ void convert_bf16_to_f32(const bf16_t* x, float* y, long long n)
{
    GRID_STRIDE(i, n) y[i] = bf16_to_float(x[i]);
}

extern "C" __global__ void convert_f16_to_f32(const f16_t* x, float* y, long long n)
{
    GRID_STRIDE(i, n) y[i] = f16_to_float(x[i]);
}
