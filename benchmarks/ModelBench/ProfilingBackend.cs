using System.Diagnostics;
using System.Runtime.InteropServices;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace ModelBench;

/// <summary>
/// <c>--profile</c> with <c>--streams</c>: an <see cref="IBackend"/> that forwards every call to the CPU backend and
/// adds its wall time to a category, so a decode step's time can be split into attention, dense FFN, experts,
/// lm_head, norms and the rest. Linear calls are named by their weight's shape and by where they run: a call after
/// the router (a Linear with as many outputs as experts) and before the next norm is an expert's. Timing costs two
/// timestamps per call (about a thousand calls per step), negligible against a step of 100 ms.
/// <para>With <paramref name="threadCpuTime"/> (for <c>--threads 1</c>, where every kernel runs on the calling
/// thread) a call's time is the calling thread's CPU time, in 100 ns ticks: time the thread waited for a core on a
/// busy machine is left out, stalls on memory are kept. Calls of a decode step (dense <c>LinearRows</c>, or
/// <c>Linear</c> on one row) and of a prefill (dense <c>Linear</c> on several rows) go to separate categories; other
/// operations go with the kind of the latest dense Linear call.</para>
/// </summary>
public sealed partial class ProfilingBackend(IBackend inner, int experts, int vocab, bool threadCpuTime) : IBackend
{
    private readonly Dictionary<string, (long Calls, long Ticks)> _totals = new();
    private bool _inExperts, _prefill;

    /// <summary>Ticks per second of the recorded times.</summary>
    public long Frequency => threadCpuTime ? TimeSpan.TicksPerSecond : Stopwatch.Frequency;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec { public long Seconds, Nanoseconds; }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec time);

    private long Now()
    {
        if (!threadCpuTime) return Stopwatch.GetTimestamp();
        ClockGetTime(3 /* CLOCK_THREAD_CPUTIME_ID */, out var t);
        return t.Seconds * TimeSpan.TicksPerSecond + t.Nanoseconds / 100;
    }

    public IBackend Inner => inner;

    /// <summary>Per category: calls and elapsed ticks since the last <see cref="Reset"/>.</summary>
    public Dictionary<string, (long Calls, long Ticks)> Snapshot()
    {
        lock (_totals) return new(_totals);
    }

    public void Reset()
    {
        lock (_totals) _totals.Clear();
    }

    private void Add(string category, long start)
    {
        long ticks = Now() - start;
        if (_prefill) category = "prefill: " + category;
        lock (_totals)
        {
            _totals.TryGetValue(category, out var t);
            _totals[category] = (t.Calls + 1, t.Ticks + ticks);
        }
    }

    private string LinearCategory(Tensor x, Tensor weight, bool rows)
    {
        // A dense Linear call says which forward this is: the scheduler's decode step runs LinearRows (or Linear on
        // its one row), a prefill runs Linear on the prompt's rows. Experts' calls (a subset of rows) keep the mode.
        if (!_inExperts && weight.Dim(0) != vocab && !(weight.Dim(0) == experts && weight.Dim(1) != experts)) _prefill = !rows && x.Rows > 1;
        int n = weight.Dim(0), k = weight.Dim(1);
        if (n == experts && k != n) { _inExperts = true; return "router"; }
        if (n == vocab) return $"lm_head {n}x{k}, {x.Rows} rows";
        string where = _inExperts ? "expert" : "dense";
        return $"{where} linear {n}x{k}, {x.Rows} rows";
    }

    public string Name => inner.Name;
    public DType KvCacheDType(DType weightDType) => inner.KvCacheDType(weightDType);
    public void RunDecodeStep(Action step) => inner.RunDecodeStep(step);
    public Tensor Allocate(DType dtype, params int[] shape)
    {
        long s = Now();
        var t = inner.Allocate(dtype, shape);
        Add("allocate", s);
        return t;
    }
    public Tensor PrepareWeight(Tensor weight) => inner.PrepareWeight(weight);
    public Tensor PrepareLinearWeight(Tensor weight) => inner.PrepareLinearWeight(weight);
    public void Upload(ReadOnlySpan<float> source, Tensor destination) { long s = Now(); inner.Upload(source, destination); Add("upload/download/copy", s); }
    public void Download(Tensor source, Span<float> destination) { long s = Now(); inner.Download(source, destination); Add("upload/download/copy", s); }
    public void Copy(Tensor source, Tensor destination) { long s = Now(); inner.Copy(source, destination); Add("upload/download/copy", s); }
    public void CopyRows(Tensor source, int sourceRow, Tensor destination, int destinationRow, int count)
    { long s = Now(); inner.CopyRows(source, sourceRow, destination, destinationRow, count); Add("copy rows (KV cache append)", s); }
    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    { string c = LinearCategory(x, weight, false); long s = Now(); inner.Linear(x, weight, bias, y); Add(c, s); }
    public void LinearRows(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    { string c = LinearCategory(x, weight, true); long s = Now(); inner.LinearRows(x, weight, bias, y); Add(c, s); }
    public void Add(Tensor a, Tensor b, Tensor y) { long s = Now(); inner.Add(a, b, y); Add("elementwise", s); }
    public void Multiply(Tensor a, Tensor b, Tensor y) { long s = Now(); inner.Multiply(a, b, y); Add("elementwise", s); }
    public void Scale(Tensor x, float scale, Tensor y) { long s = Now(); inner.Scale(x, scale, y); Add("elementwise", s); }
    public void LayerNorm(Tensor x, Tensor weight, Tensor? bias, float epsilon, Tensor y)
    { _inExperts = false; long s = Now(); inner.LayerNorm(x, weight, bias, epsilon, y); Add("norms", s); }
    public void RmsNorm(Tensor x, Tensor weight, float epsilon, Tensor y)
    { _inExperts = false; long s = Now(); inner.RmsNorm(x, weight, epsilon, y); Add("norms", s); }
    public void Rotary(Tensor x, int heads, int headDim, int rotaryDims, float theta, int startPosition)
    { long s = Now(); inner.Rotary(x, heads, headDim, rotaryDims, theta, startPosition); Add("rotary", s); }
    public void Activate(Tensor x, Activation activation, Tensor y) { long s = Now(); inner.Activate(x, activation, y); Add("activation/swiglu", s); }
    public void SwiGlu(Tensor gate, Tensor up, Tensor y) { long s = Now(); inner.SwiGlu(gate, up, y); Add("activation/swiglu", s); }
    public void Softmax(Tensor x, Tensor y) { long s = Now(); inner.Softmax(x, y); Add("softmax", s); }
    public void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y) { long s = Now(); inner.Embedding(table, ids, y); Add("embedding", s); }
    public void Attention(Tensor q, Tensor k, Tensor v, Tensor y, int heads, int kvHeads, int headDim, bool causal, int queryStart)
    { long s = Now(); inner.Attention(q, k, v, y, heads, kvHeads, headDim, causal, queryStart); Add($"attention kernel ({q.Rows} query rows)", s); }
    public void GatherRows(Tensor source, ReadOnlySpan<int> rows, Tensor destination) { long s = Now(); inner.GatherRows(source, rows, destination); Add("gather/scatter rows", s); }
    public void ScatterAddRows(Tensor source, ReadOnlySpan<int> rows, ReadOnlySpan<float> weights, Tensor destination)
    { long s = Now(); inner.ScatterAddRows(source, rows, weights, destination); Add("gather/scatter rows", s); }
    public void PatchEmbed(Tensor image, Tensor weight, Tensor? bias, int patch, Tensor y) => inner.PatchEmbed(image, weight, bias, patch, y);
    public void AvgPool2d(Tensor x, int height, int width, int kernel, Tensor y) => inner.AvgPool2d(x, height, width, kernel, y);
    public void UpsampleBicubic(Tensor x, int outHeight, int outWidth, Tensor y) => inner.UpsampleBicubic(x, outHeight, outWidth, y);
    public void Dispose() { }
}
