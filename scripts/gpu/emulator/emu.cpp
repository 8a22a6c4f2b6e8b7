// CPU emulation of the CUDA driver API and the cuBLAS calls the backend makes. See build.sh.
#include "emu.h"
#include <ucontext.h>
#include <csetjmp>
#include <setjmp.h>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

dim3 threadIdx, blockIdx, blockDim, gridDim;

// ------------------------------------------------------------------ fibers
//
// A switch between fibers is a setjmp/longjmp pair (GCC builtins): swapcontext saves and restores the signal mask with a
// system call on every switch, which made emulated runs spend ~90% of their time in the kernel. A fiber is
// entered through its ucontext once in the process's life and then loops, running one thread of a block after
// another; the fibers live as long as the process, so no block pays for makecontext or a system call.

namespace {
constexpr size_t StackBytes = 256 * 1024;

// GCC's __builtin_setjmp/__builtin_longjmp keep only the frame, stack and resume address (the compiler spills
// the rest around the setjmp), without glibc's unwinding bookkeeping.
using JumpBuffer = void*[5];

struct Fiber
{
    JumpBuffer context;       // where the fiber resumes (valid once started)
    ucontext_t start;         // its first entry only
    std::vector<char> stack;
    unsigned int index;       // linear thread index in the block
    int waiting = 0;          // 0 runnable, 1 block barrier, 2 warp barrier
    bool done = false;
    bool started = false;
};

struct BlockRun
{
    // unique_ptr: a ucontext_t points into itself and must not move.
    std::vector<std::unique_ptr<Fiber>> fibers;
    JumpBuffer scheduler;
    int current = -1;
    int alive = 0;
    int atBlockBarrier = 0;
    std::vector<int> warpAlive, atWarpBarrier;
    std::vector<float> exchange;  // one slot per thread for shuffles
    std::vector<float> dynamicShared;
    std::function<void()> body;
};

BlockRun* g_run = nullptr;
std::map<std::string, EmuKernel>& Registry() { static std::map<std::string, EmuKernel> r; return r; }
std::recursive_mutex g_lock;

void SetThreadIndex(unsigned int i)
{
    threadIdx.x = i % blockDim.x;
    threadIdx.y = i / blockDim.x % blockDim.y;
    threadIdx.z = i / (blockDim.x * blockDim.y);
}

Fiber& Current() { return *g_run->fibers[g_run->current]; }

void ReleaseWarp(int warp)
{
    size_t end = std::min(g_run->fibers.size(), size_t(warp + 1) * 32);
    for (size_t i = size_t(warp) * 32; i < end; i++)
        if (g_run->fibers[i]->waiting == 2) g_run->fibers[i]->waiting = 0;
}

// The jump must be made from another function than the setjmp.
[[gnu::noinline]] void JumpTo(JumpBuffer& target) { __builtin_longjmp(target, 1); }

// From a fiber back to the block's scheduler loop; returns when the scheduler resumes this fiber.
void Yield()
{
    Fiber& f = Current();
    if (__builtin_setjmp(f.context) == 0) JumpTo(g_run->scheduler);
    SetThreadIndex(f.index);
}

void FiberMain()
{
    for (;;)
    {
        g_run->body();
        Fiber& f = Current();
        f.done = true;
        g_run->alive--;
        int warp = f.index / 32;
        g_run->warpAlive[warp]--;
        // An exited thread no longer holds back barriers, as on the hardware.
        if (g_run->atBlockBarrier > 0 && g_run->atBlockBarrier == g_run->alive)
        {
            for (auto& o : g_run->fibers) if (o->waiting == 1) o->waiting = 0;
            g_run->atBlockBarrier = 0;
        }
        if (g_run->atWarpBarrier[warp] > 0 && g_run->atWarpBarrier[warp] == g_run->warpAlive[warp])
        {
            ReleaseWarp(warp);
            g_run->atWarpBarrier[warp] = 0;
        }
        // Parked until a later block gives this fiber another thread to run.
        Yield();
    }
}

// From the scheduler into fiber f until it yields or finishes its thread.
void Resume(BlockRun& run, Fiber& f)
{
    if (__builtin_setjmp(run.scheduler) != 0) return;
    if (f.started) JumpTo(f.context);
    f.started = true;
    ucontext_t unused;
    swapcontext(&unused, &f.start);  // the fiber comes back by jumping to run.scheduler, never through here
    std::abort();
}

void RunBlock(BlockRun& run, unsigned int threads)
{
    while (run.fibers.size() < threads)
    {
        auto f = std::make_unique<Fiber>();
        f->stack.resize(StackBytes);
        getcontext(&f->start);
        f->start.uc_stack.ss_sp = f->stack.data();
        f->start.uc_stack.ss_size = f->stack.size();
        f->start.uc_link = nullptr;
        makecontext(&f->start, FiberMain, 0);
        run.fibers.push_back(std::move(f));
    }
    run.alive = threads;
    run.atBlockBarrier = 0;
    unsigned int warps = (threads + 31) / 32;
    run.warpAlive.assign(warps, 0);
    run.atWarpBarrier.assign(warps, 0);
    run.exchange.assign(threads, 0.0f);
    for (unsigned int i = 0; i < run.fibers.size(); i++)
    {
        Fiber& f = *run.fibers[i];
        f.index = i;
        f.waiting = 0;
        f.done = i >= threads;  // spare fibers of a larger earlier block stay parked
        if (i < threads) run.warpAlive[i / 32]++;
    }
    while (run.alive > 0)
    {
        bool progressed = false;
        for (unsigned int i = 0; i < threads; i++)
        {
            Fiber& f = *run.fibers[i];
            if (f.done || f.waiting != 0) continue;
            run.current = i;
            SetThreadIndex(i);
            Resume(run, f);
            progressed = true;
        }
        if (!progressed)
        {
            std::fprintf(stderr, "emulator: deadlock in a block (threads waiting at barriers that cannot complete)\n");
            std::abort();
        }
    }
}
}  // namespace

void emu_syncthreads()
{
    Fiber& f = Current();
    f.waiting = 1;
    if (++g_run->atBlockBarrier == g_run->alive)
    {
        for (auto& o : g_run->fibers) if (o->waiting == 1) o->waiting = 0;
        g_run->atBlockBarrier = 0;
        return;
    }
    Yield();
}

static void WarpBarrier()
{
    Fiber& f = Current();
    int warp = f.index / 32;
    f.waiting = 2;
    if (++g_run->atWarpBarrier[warp] == g_run->warpAlive[warp])
    {
        ReleaseWarp(warp);
        g_run->atWarpBarrier[warp] = 0;
        return;
    }
    Yield();
}

float emu_shfl_xor(float v, int offset)
{
    unsigned int me = Current().index;
    g_run->exchange[me] = v;
    WarpBarrier();
    unsigned int other = (me & ~31u) | ((me & 31u) ^ (unsigned)offset);
    float r = other < g_run->exchange.size() ? g_run->exchange[other] : v;
    WarpBarrier();
    return r;
}

float* emu_dynamic_shared() { return g_run->dynamicShared.data(); }

void emu_register(EmuKernel kernel) { Registry()[kernel.name] = std::move(kernel); }

static void Launch(const EmuKernel& kernel, dim3 grid, dim3 block, unsigned int shared, void** args)
{
    std::lock_guard<std::recursive_mutex> guard(g_lock);
    static BlockRun run;
    run.dynamicShared.assign(shared / 4 + 1, 0.0f);
    gridDim = grid;
    blockDim = block;
    run.body = [&] { kernel.invoke(args); };
    g_run = &run;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++)
            {
                blockIdx = {x, y, z};
                RunBlock(run, block.x * block.y * block.z);
            }
    g_run = nullptr;
}

// ------------------------------------------------------------------ stream work and graphs

namespace {
struct Op
{
    std::function<void()> run;
    int kind;  // 0 kernel, 1 copy
};
struct Graph { std::vector<Op> ops; };
// Captures are per stream, as in CUDA: another stream (another backend, another test class) keeps running.
std::map<void*, Graph*> g_captures;
std::map<void*, void*> g_blasStreams;
size_t g_allocated = 0;
long g_nextHandle = 0x100;

bool Capturing(void* stream) { return g_captures.count(stream) != 0; }

void Enqueue(void* stream, int kind, std::function<void()> work)
{
    std::lock_guard<std::recursive_mutex> guard(g_lock);
    auto it = g_captures.find(stream);
    if (it != g_captures.end()) it->second->ops.push_back({std::move(work), kind});
    else work();
}
}  // namespace
#define LOCKED std::lock_guard<std::recursive_mutex> guard(g_lock)

extern "C" {
typedef int CUresult;

CUresult cuInit(unsigned) { return 0; }
CUresult cuDriverGetVersion(int* v) { *v = 12040; return 0; }
CUresult cuDeviceGetCount(int* c) { *c = 1; return 0; }
CUresult cuDeviceGet(int* d, int ordinal) { *d = ordinal; return ordinal == 0 ? 0 : 101; }
CUresult cuDeviceGetName(char* name, int len, int) { std::snprintf(name, len, "CPU emulation of a CUDA device"); return 0; }
CUresult cuDeviceGetAttribute(int* v, int attribute, int)
{
    switch (attribute)
    {
        case 16: *v = 1; break;        // multiprocessors: keeps grid-stride launches small
        case 75: *v = 8; break;        // compute capability 8.0
        case 76: *v = 0; break;
        case 97: *v = 99 * 1024; break;
        default: *v = 0; break;
    }
    return 0;
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, int) { *bytes = size_t(16) << 30; return 0; }
CUresult cuDevicePrimaryCtxRetain(void** ctx, int) { *ctx = (void*)0x1; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int) { return 0; }
CUresult cuCtxSetCurrent(void*) { return 0; }
CUresult cuCtxSynchronize() { return 0; }
CUresult cuMemAlloc_v2(void** p, size_t bytes)
{
    LOCKED;
    *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
    std::memset(*p, 0xcd, bytes);  // garbage, like fresh device memory
    g_allocated += bytes;
    return *p ? 0 : 2;
}
CUresult cuMemFree_v2(void* p) { std::free(p); return 0; }
// Page-locked host blocks, remembered so that a captured copy to one can be told from one to pageable memory.
std::map<char*, size_t> g_pinned;
static bool IsPinned(const void* p, size_t n)
{
    auto it = g_pinned.upper_bound((char*)p);
    if (it == g_pinned.begin()) return false;
    --it;
    return (char*)p >= it->first && (char*)p + n <= it->first + it->second;
}
CUresult cuMemAllocHost_v2(void** p, size_t bytes)
{
    LOCKED;
    *p = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
    g_pinned[(char*)*p] = bytes;
    return 0;
}
CUresult cuMemFreeHost(void* p) { LOCKED; g_pinned.erase((char*)p); std::free(p); return 0; }
CUresult cuMemGetInfo_v2(size_t* free, size_t* total) { *total = size_t(16) << 30; *free = *total - g_allocated; return 0; }
CUresult cuMemcpyHtoD_v2(void* d, const void* s, size_t n) { std::memcpy(d, s, n); return 0; }
CUresult cuMemcpyDtoH_v2(void* d, const void* s, size_t n) { std::memcpy(d, s, n); return 0; }
CUresult cuMemcpyHtoDAsync_v2(void* d, const void* s, size_t n, void* stream)
{
    // Like a captured memcpy node, the source is read when the work runs, not when it is queued.
    Enqueue(stream, 1, [=] { std::memcpy(d, s, n); });
    return 0;
}
CUresult cuMemcpyDtoHAsync_v2(void* d, const void* s, size_t n, void* stream)
{
    LOCKED;
    // As in CUDA, a capture may contain a copy to page-locked memory (a memcpy node) but not to pageable memory.
    if (Capturing(stream) && !IsPinned(d, n)) return 900;
    Enqueue(stream, 1, [=] { std::memcpy(d, s, n); });
    return 0;
}
CUresult cuMemcpyDtoDAsync_v2(void* d, const void* s, size_t n, void* stream) { Enqueue(stream, 1, [=] { std::memmove(d, s, n); }); return 0; }
CUresult cuMemsetD32Async(void* d, unsigned v, size_t n, void* stream) { Enqueue(stream, 1, [=] { auto* p = (unsigned*)d; for (size_t i = 0; i < n; i++) p[i] = v; }); return 0; }
CUresult cuStreamCreate(void** s, unsigned) { LOCKED; *s = (void*)(g_nextHandle++); return 0; }
CUresult cuStreamDestroy_v2(void*) { return 0; }
CUresult cuStreamSynchronize(void* stream) { LOCKED; return Capturing(stream) ? 900 : 0; }
CUresult cuModuleLoadData(void** module, const void* image) { *module = (void*)0x3; return image ? 0 : 1; }
CUresult cuModuleUnload(void*) { return 0; }
CUresult cuModuleGetFunction(void** f, void*, const char* name)
{
    auto it = Registry().find(name);
    if (it == Registry().end()) return 500;  // CUDA_ERROR_NOT_FOUND
    *f = &it->second;
    return 0;
}
CUresult cuFuncSetAttribute(void*, int, int) { return 0; }
CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, void* stream, void** params, void**)
{
    auto* kernel = static_cast<EmuKernel*>(f);
    if (bx * by * bz > 1024 || bx * by * bz == 0 || gx == 0 || gy == 0 || gz == 0) return 1;  // CUDA_ERROR_INVALID_VALUE
    // Copy the argument values now, as the driver does.
    auto storage = std::make_shared<std::vector<std::vector<char>>>();
    for (size_t i = 0; i < kernel->argSizes.size(); i++)
        storage->emplace_back((char*)params[i], (char*)params[i] + kernel->argSizes[i]);
    Enqueue(stream, 0, [=] {
        std::vector<void*> args;
        for (auto& a : *storage) args.push_back(a.data());
        Launch(*kernel, {gx, gy, gz}, {bx, by, bz}, shared, args.data());
    });
    return 0;
}
CUresult cuStreamBeginCapture_v2(void* stream, int) { LOCKED; if (Capturing(stream)) return 900; g_captures[stream] = new Graph(); return 0; }
CUresult cuStreamEndCapture(void* stream, void** graph)
{
    LOCKED;
    auto it = g_captures.find(stream);
    if (it == g_captures.end()) return 1;
    *graph = it->second;
    g_captures.erase(it);
    return 0;
}
CUresult cuStreamIsCapturing(void* stream, int* status) { LOCKED; *status = Capturing(stream) ? 1 : 0; return 0; }
CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long) { *exec = new Graph(*static_cast<Graph*>(graph)); return 0; }
struct UpdateInfo { int result; void* a; void* b; };
CUresult cuGraphExecUpdate_v2(void* exec, void* graph, UpdateInfo* info)
{
    auto* e = static_cast<Graph*>(exec);
    auto* g = static_cast<Graph*>(graph);
    bool same = e->ops.size() == g->ops.size();
    for (size_t i = 0; same && i < g->ops.size(); i++) same = e->ops[i].kind == g->ops[i].kind;
    if (info) info->result = same ? 0 : 2;
    if (!same) return 910;  // CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE
    e->ops = g->ops;
    return 0;
}
CUresult cuGraphLaunch(void* exec, void* stream) { LOCKED; if (Capturing(stream)) return 900; for (auto& op : static_cast<Graph*>(exec)->ops) op.run(); return 0; }
CUresult cuGraphExecDestroy(void* exec) { delete static_cast<Graph*>(exec); return 0; }
CUresult cuGraphDestroy(void* graph) { delete static_cast<Graph*>(graph); return 0; }
CUresult cuGetErrorName(int code, const char** s) { static thread_local char b[64]; std::snprintf(b, 64, "EMU_ERROR_%d", code); *s = b; return 0; }
CUresult cuGetErrorString(int, const char** s) { *s = "emulated CUDA error"; return 0; }

// ------------------------------------------------------------------ cuBLAS

static float Load(const void* p, int type, size_t i)
{
    switch (type)
    {
        case 0: return ((const float*)p)[i];
        case 2: return emu_h2f(((const unsigned short*)p)[i]);
        case 14: return __uint_as_float(((unsigned int)((const unsigned short*)p)[i]) << 16);
        default: std::abort();
    }
}

int cublasCreate_v2(void** h) { LOCKED; *h = (void*)(g_nextHandle++); return 0; }
int cublasDestroy_v2(void*) { return 0; }
int cublasSetStream_v2(void* h, void* stream) { LOCKED; g_blasStreams[h] = stream; return 0; }
int cublasSetMathMode(void*, int) { return 0; }
int cublasSetWorkspace_v2(void*, void*, size_t) { return 0; }
const char* cublasGetStatusString(int) { return "emulated cuBLAS error"; }

int cublasGemmStridedBatchedEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* A, int at, int lda, long long sa,
                               const void* B, int bt, int ldb, long long sb, const void* beta, void* C, int ct, int ldc, long long sc,
                               int batch, int compute, int)
{
    if (ct != 0 || compute != 68 || at != bt) return 7;  // CUBLAS_STATUS_INVALID_VALUE for what the backend never asks
    float a = *(const float*)alpha, b = *(const float*)beta;
    void* stream;
    { LOCKED; stream = g_blasStreams[h]; }
    Enqueue(stream, 0, [=] {
        for (int q = 0; q < batch; q++)
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++)
                {
                    float acc = 0;
                    for (int p = 0; p < k; p++)
                    {
                        float x = ta ? Load(A, at, q * sa + (size_t)i * lda + p) : Load(A, at, q * sa + (size_t)p * lda + i);
                        float y = tb ? Load(B, bt, q * sb + (size_t)p * ldb + j) : Load(B, bt, q * sb + (size_t)j * ldb + p);
                        acc += x * y;
                    }
                    float* c = (float*)C + q * sc + (size_t)j * ldc + i;
                    *c = a * acc + (b != 0 ? b * *c : 0.0f);
                }
    });
    return 0;
}

int cublasGemmEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* A, int at, int lda,
                 const void* B, int bt, int ldb, const void* beta, void* C, int ct, int ldc, int compute, int algo)
{
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0, 1, compute, algo);
}
}
