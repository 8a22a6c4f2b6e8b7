using System.Runtime.CompilerServices;

namespace MoeCompiler.Runtime.Threading;

/// <summary>One unit of a parallel loop: <paramref name="index"/> is the task, <paramref name="worker"/> the thread
/// running it (0 = the caller), for per-thread scratch.</summary>
public interface IParallelJob
{
    void Execute(int index, int worker);
}

/// <summary>
/// A fixed set of threads (the caller plus <c>Threads − 1</c> workers) that run the tasks of one parallel loop at a
/// time. Tasks are claimed dynamically, so which thread runs a task varies; kernels keep results independent of
/// the thread count by making every task write disjoint outputs with a fixed reduction order inside the task.
/// Starting a loop allocates nothing. Nested or concurrent loops run inline on the calling thread.
/// </summary>
/// <remarks>
/// Two claiming orders. Shared (the default): one counter, tasks handed out in index order to whichever thread asks,
/// so consecutive tasks alternate between threads. Contiguous: every thread owns an equal run of consecutive tasks,
/// takes it from the front, and when it is done takes what is left of the others' runs from their back ends. A
/// kernel that streams memory in task order (decode's matrix-vector products) then reads one unbroken range per
/// thread, which the hardware and software prefetches keep ahead of; with alternating tasks every task start is a
/// cold miss and the prefetches past a task's end fetch the other thread's rows (docs/performance.md, "Task order").
/// </remarks>
public sealed unsafe class WorkerPool : IDisposable
{
    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _wake;
    private readonly ManualResetEventSlim _done = new(false);
    private readonly object _gate = new();
    private volatile bool _disposed;

    private delegate*<void*, int, int, void> _body;
    private void* _context;
    private int _count;
    private int _next;
    private bool _contiguous;
    /// <summary>Contiguous order: participant p's remaining run [front, back) as front | back &lt;&lt; 32, one cache line apart.</summary>
    private readonly long[] _runs;
    private const int RunStride = 8;
    private int _pending;
    private Exception? _error;

    [ThreadStatic] private static bool t_insideLoop;

    public WorkerPool(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Threads = threads;
        _threads = new Thread[threads - 1];
        _wake = new SemaphoreSlim[threads - 1];
        _runs = new long[threads * RunStride];
        for (int i = 0; i < _threads.Length; i++)
        {
            _wake[i] = new SemaphoreSlim(0);
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker))
            {
                IsBackground = true,
                Name = $"moe-cpu-{worker}",
            };
            _threads[i].Start();
        }
    }

    /// <summary>Threads taking part in a loop, the caller included.</summary>
    public int Threads { get; }

    /// <summary>Runs <c>job.Execute(i, worker)</c> for every i in [0, count) and returns when all are done.
    /// <paramref name="job"/> must live on the caller's stack (a local), because workers read it through its address.</summary>
    public void Run<TJob>(int count, ref TJob job) where TJob : struct, IParallelJob
    {
        Run(count, &Invoke<TJob>, Unsafe.AsPointer(ref job));
    }

    /// <summary><see cref="Run{TJob}(int, ref TJob)"/> in the contiguous claiming order (see the remarks on the type).</summary>
    public void RunContiguous<TJob>(int count, ref TJob job) where TJob : struct, IParallelJob
    {
        Run(count, &Invoke<TJob>, Unsafe.AsPointer(ref job), contiguous: true);
    }

    private static void Invoke<TJob>(void* job, int index, int worker) where TJob : struct, IParallelJob
        => Unsafe.AsRef<TJob>(job).Execute(index, worker);

    public void Run(int count, delegate*<void*, int, int, void> body, void* context, bool contiguous = false)
    {
        if (count <= 0) return;
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (count == 1 || _threads.Length == 0 || t_insideLoop || !Monitor.TryEnter(_gate))
        {
            for (int i = 0; i < count; i++) body(context, i, 0);
            return;
        }
        try
        {
            _body = body;
            _context = context;
            _count = count;
            _next = 0;
            _error = null;
            int helpers = Math.Min(_threads.Length, count - 1);
            _contiguous = contiguous;
            if (contiguous)
            {
                int participants = helpers + 1;
                for (int p = 0; p < participants; p++)
                {
                    long front = (long)count * p / participants, back = (long)count * (p + 1) / participants;
                    _runs[p * RunStride] = front | back << 32;
                }
                for (int p = participants; p < Threads; p++) _runs[p * RunStride] = 0;
            }
            _pending = helpers;
            _done.Reset();
            for (int i = 0; i < helpers; i++) _wake[i].Release();
            t_insideLoop = true;
            try
            {
                Drain(0);
            }
            finally
            {
                t_insideLoop = false;
            }
            _done.Wait();
            _body = null;
            _context = null;
            if (_error is { } error) throw new AggregateException("a parallel kernel task failed", error);
        }
        finally
        {
            Monitor.Exit(_gate);
        }
    }

    private void Drain(int worker)
    {
        try
        {
            int i;
            if (_contiguous)
                while ((i = ClaimContiguous(worker)) >= 0) _body(_context, i, worker);
            else
                while ((i = Interlocked.Increment(ref _next) - 1) < _count) _body(_context, i, worker);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _error, e, null);
            Volatile.Write(ref _next, _count);
            for (int p = 0; p < Threads; p++) Volatile.Write(ref _runs[p * RunStride], 0);
        }
    }

    /// <summary>The next task of <paramref name="worker"/>'s own run (from its front), else one from the back of
    /// another's; −1 when none is left.</summary>
    private int ClaimContiguous(int worker)
    {
        ref long own = ref _runs[worker * RunStride];
        while (true)
        {
            long run = Volatile.Read(ref own);
            int front = (int)run, back = (int)(run >> 32);
            if (front >= back) break;
            if (Interlocked.CompareExchange(ref own, run + 1, run) == run) return front;
        }
        for (int k = 1; k < Threads; k++)
        {
            ref long other = ref _runs[(worker + k) % Threads * RunStride];
            while (true)
            {
                long run = Volatile.Read(ref other);
                int front = (int)run, back = (int)(run >> 32);
                if (front >= back) break;
                if (Interlocked.CompareExchange(ref other, (uint)front | (long)(back - 1) << 32, run) == run) return back - 1;
            }
        }
        return -1;
    }

    private void WorkerLoop(int worker)
    {
        t_insideLoop = true;
        var wake = _wake[worker - 1];
        while (true)
        {
            wake.Wait();
            if (_disposed) return;
            Drain(worker);
            if (Interlocked.Decrement(ref _pending) == 0) _done.Set();
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        lock (_gate)
        {
            _disposed = true;
            foreach (var wake in _wake) wake.Release();
        }
        foreach (var thread in _threads) thread.Join();
        foreach (var wake in _wake) wake.Dispose();
        _done.Dispose();
    }
}
