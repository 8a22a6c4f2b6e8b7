using MoeCompiler.Runtime.Threading;
using Xunit;

namespace MoeCompiler.Runtime.Tests.Kernels;

public sealed class WorkerPoolTests
{
    private struct MarkJob : IParallelJob
    {
        public int[] Hits;
        public void Execute(int index, int worker) => Interlocked.Increment(ref Hits[index]);
    }

    private struct ThrowJob : IParallelJob
    {
        public void Execute(int index, int worker)
        {
            if (index == 5) throw new InvalidOperationException("task five");
        }
    }

    private struct NestedJob : IParallelJob
    {
        public WorkerPool Pool;
        public int[] Hits;
        public void Execute(int index, int worker)
        {
            var inner = new MarkJob { Hits = Hits };
            Pool.Run(Hits.Length, ref inner); // runs inline on this thread
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void RunsEveryTaskExactlyOnce(int threads)
    {
        using var pool = new WorkerPool(threads);
        foreach (int count in new[] { 0, 1, 3, 1000 })
        {
            var job = new MarkJob { Hits = new int[count] };
            pool.Run(count, ref job);
            Assert.All(job.Hits, h => Assert.Equal(1, h));
        }
    }

    [Fact]
    public void PropagatesTaskExceptionsAndStaysUsable()
    {
        using var pool = new WorkerPool(2);
        var failing = new ThrowJob();
        var e = Assert.Throws<AggregateException>(() => pool.Run(20, ref failing));
        Assert.Contains("task five", e.InnerException!.Message);
        var job = new MarkJob { Hits = new int[50] };
        pool.Run(50, ref job);
        Assert.All(job.Hits, h => Assert.Equal(1, h));
    }

    [Fact]
    public void NestedAndConcurrentLoopsComplete()
    {
        using var pool = new WorkerPool(2);
        var nested = new NestedJob { Pool = pool, Hits = new int[10] };
        pool.Run(4, ref nested);
        Assert.All(nested.Hits, h => Assert.Equal(4, h));

        var results = new int[4][];
        Parallel.For(0, 4, i =>
        {
            var job = new MarkJob { Hits = new int[100] };
            pool.Run(100, ref job);
            results[i] = job.Hits;
        });
        Assert.All(results, r => Assert.All(r, h => Assert.Equal(1, h)));
    }
}
