using System.Runtime.InteropServices;

namespace MoeCompiler.Benchmarks;

/// <summary>Debian's OpenBLAS (libopenblas0), the peer for f32 GEMM. Used by the benchmark only.</summary>
internal static unsafe partial class OpenBlas
{
    private const string Library = "libopenblas.so.0";
    private const int RowMajor = 101, NoTrans = 111, Trans = 112;

    [LibraryImport(Library, EntryPoint = "cblas_sgemm")]
    private static partial void CblasSgemm(int order, int transA, int transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    [LibraryImport(Library, EntryPoint = "openblas_set_num_threads")]
    private static partial void SetNumThreads(int threads);

    public static bool TryLoad(int threads)
    {
        if (!NativeLibrary.TryLoad(Library, out _)) return false;
        SetNumThreads(threads);
        return true;
    }

    /// <summary>y[M,N] = x[M,K] · w[N,K]ᵀ, the same layout as the runtime's Linear.</summary>
    public static void Linear(float* x, float* w, float* y, int m, int n, int k)
        => CblasSgemm(RowMajor, NoTrans, Trans, m, n, k, 1f, x, k, w, k, 0f, y, n);
}
