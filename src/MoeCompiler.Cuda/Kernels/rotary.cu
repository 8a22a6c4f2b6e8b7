// Rotate-half RoPE in place on the first rotary_dims of each head; row t has position start_position + t.
// inv_freq and the angle are computed in f32 as in the reference implementations.
extern "C" __global__ void rotary_f32(float* x, int rows, int heads, int head_dim, int rotary_dims, float theta, int start_position)
{
    int half = rotary_dims / 2;
    long long total = (long long)rows * heads * half;
    GRID_STRIDE(index, total)
    {
        int i = (int)(index % half);
        long long rowHead = index / half;
        int head = (int)(rowHead % heads);
        int row = (int)(rowHead / heads);
        float invFreq = 1.0f / powf(theta, (float)(2 * i) / (float)rotary_dims);
        float angle = (float)(start_position + row) * invFreq;
        float s, c;
        sincosf(angle, &s, &c);
        float* h = x + (long long)row * heads * head_dim + (long long)head * head_dim;
        float x1 = h[i], x2 = h[i + half];
        h[i] = x1 * c - x2 * s;
        h[i + half] = x2 * c + x1 * s;
    }
}
