// Vision-tower helpers: patch extraction for the patch-embedding GEMM, average pooling and bicubic resizing.

// image [3, H, W] to patches [(H/p)*(W/p), 3*p*p]; column order (channel, ky, kx) matches a conv weight [C, 3, p, p].
extern "C" __global__ void im2col_patches_f32(const float* image, float* patches, int height, int width, int patch)
{
    int gridW = width / patch, gridH = height / patch, patchLen = 3 * patch * patch;
    long long total = (long long)gridH * gridW * patchLen;
    GRID_STRIDE(i, total)
    {
        int col = (int)(i % patchLen);
        int n = (int)(i / patchLen);
        int c = col / (patch * patch), ky = (col / patch) % patch, kx = col % patch;
        int py = n / gridW, px = n % gridW;
        patches[i] = image[((long long)c * height + py * patch + ky) * width + px * patch + kx];
    }
}

// x [H*W, C] channels-last grid; k x k average with stride k to y [(H/k)*(W/k), C].
extern "C" __global__ void avg_pool2d_f32(const float* x, float* y, int height, int width, int channels, int kernel)
{
    int outH = height / kernel, outW = width / kernel;
    long long total = (long long)outH * outW * channels;
    GRID_STRIDE(i, total)
    {
        int c = (int)(i % channels);
        int cell = (int)(i / channels);
        int oy = cell / outW, ox = cell % outW;
        float sum = 0.0f;
        for (int ky = 0; ky < kernel; ky++)
            for (int kx = 0; kx < kernel; kx++)
                sum += x[((long long)(oy * kernel + ky) * width + ox * kernel + kx) * channels + c];
        y[i] = sum / (float)(kernel * kernel);
    }
}

__device__ __forceinline__ float cubic_near(float t, float a) { return ((a + 2.0f) * t - (a + 3.0f)) * t * t + 1.0f; }
__device__ __forceinline__ float cubic_far(float t, float a) { return ((a * t - 5.0f * a) * t + 8.0f * a) * t - 4.0f * a; }

// PyTorch bicubic (align_corners=false, A=-0.75, no antialias): source index scale*(dst+0.5)-0.5 unclamped,
// taps clamped to the border. x [C, H, W] to y [C, outH, outW].
extern "C" __global__ void upsample_bicubic_f32(const float* x, float* y, int channels, int height, int width, int out_height, int out_width)
{
    const float a = -0.75f;
    float scaleY = (float)height / (float)out_height, scaleX = (float)width / (float)out_width;
    long long total = (long long)channels * out_height * out_width;
    GRID_STRIDE(i, total)
    {
        int ox = (int)(i % out_width);
        int oy = (int)((i / out_width) % out_height);
        int c = (int)(i / ((long long)out_width * out_height));
        float realY = scaleY * (oy + 0.5f) - 0.5f, realX = scaleX * (ox + 0.5f) - 0.5f;
        int iy = (int)floorf(realY), ix = (int)floorf(realX);
        float ty = realY - iy, tx = realX - ix;
        float wy[4] = { cubic_far(ty + 1.0f, a), cubic_near(ty, a), cubic_near(1.0f - ty, a), cubic_far(2.0f - ty, a) };
        float wx[4] = { cubic_far(tx + 1.0f, a), cubic_near(tx, a), cubic_near(1.0f - tx, a), cubic_far(2.0f - tx, a) };
        const float* plane = x + (long long)c * height * width;
        float result = 0.0f;
        for (int r = 0; r < 4; r++)
        {
            int sy = min(max(iy - 1 + r, 0), height - 1);
            float rowValue = 0.0f;
            for (int q = 0; q < 4; q++)
            {
                int sx = min(max(ix - 1 + q, 0), width - 1);
                rowValue += plane[(long long)sy * width + sx] * wx[q];
            }
            result += rowValue * wy[r];
        }
        y[i] = result;
    }
}
