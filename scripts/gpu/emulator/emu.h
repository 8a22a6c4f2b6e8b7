// A CPU stand-in for the CUDA execution model, just enough to run this project's kernels unchanged:
// blocks run one after another; the threads of a block run as cooperative fibers on one OS thread and switch
// only at __syncthreads and warp shuffles, which are real barriers (block-wide / per warp).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>

struct dim3 { unsigned int x = 1, y = 1, z = 1; };
struct uint4 { unsigned int x, y, z, w; };
struct float4 { float x, y, z, w; };

extern dim3 threadIdx, blockIdx, blockDim, gridDim;

void emu_syncthreads();
float emu_shfl_xor(float v, int offset);
float* emu_dynamic_shared();

#define __global__
#define __device__ static
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() emu_syncthreads()
#define __shfl_xor_sync(mask, v, offset) emu_shfl_xor((v), (offset))

using std::min;
using std::max;

static inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
static inline float emu_h2f(unsigned short h) { _Float16 v; std::memcpy(&v, &h, 2); return (float)v; }
static inline unsigned short emu_f2h(float f) { _Float16 v = (_Float16)f; unsigned short h; std::memcpy(&h, &v, 2); return h; }

#include <vector>
#include <string>
#include <functional>

// Kernel registry: name, argument sizes (for copying arguments into captured graphs) and an invoker.
struct EmuKernel
{
    const char* name;
    std::vector<size_t> argSizes;
    std::function<void(void**)> invoke;
};
void emu_register(EmuKernel kernel);

template <typename... A, size_t... I>
static void emu_call(void (*f)(A...), void** args, std::index_sequence<I...>) { f(*static_cast<A*>(args[I])...); }

template <typename... A>
struct EmuRegistration
{
    EmuRegistration(const char* name, void (*f)(A...))
    {
        emu_register({name, {sizeof(A)...}, [f](void** args) { emu_call(f, args, std::index_sequence_for<A...>{}); }});
    }
};
#define EMU_REGISTER(name) static EmuRegistration emu_reg_##name(#name, &name);
