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
    private int _pending;
    private Exception? _error;

    [ThreadStatic] private static bool t_insideLoop;

    public WorkerPool(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Threads = threads;
        _threads = new Thread[threads - 1];
        _wake = new SemaphoreSlim[threads - 1];
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

    private static void Invoke<TJob>(void* job, int index, int worker) where TJob : struct, IParallelJob
        => Unsafe.AsRef<TJob>(job).Execute(index, worker);

    public void Run(int count, delegate*<void*, int, int, void> body, void* context)
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
            while ((i = Interlocked.Increment(ref _next) - 1) < _count) _body(_context, i, worker);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _error, e, null);
            Volatile.Write(ref _next, _count);
        }
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
