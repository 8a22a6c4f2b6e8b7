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

    /// <summary>Records, per worker, the tasks it ran in the order it ran them.</summary>
    private struct RecordJob : IParallelJob
    {
        public List<int>[] ByWorker;
        public void Execute(int index, int worker)
        {
            ByWorker[worker].Add(index);
            if (index % 7 == 0) Thread.SpinWait(2000); // uneven tasks, so that threads finish their runs at different times
        }
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

    /// <summary>A failing task surfaces from either claiming order, and the pool runs loops of both orders afterwards.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PropagatesTaskExceptionsAndStaysUsable(bool contiguous)
    {
        using var pool = new WorkerPool(2);
        var failing = new ThrowJob();
        var e = Assert.Throws<AggregateException>(() =>
        {
            if (contiguous) pool.RunContiguous(20, ref failing);
            else pool.Run(20, ref failing);
        });
        Assert.Contains("task five", e.InnerException!.Message);
        var job = new MarkJob { Hits = new int[50] };
        pool.Run(50, ref job);
        pool.RunContiguous(50, ref job);
        Assert.All(job.Hits, h => Assert.Equal(2, h));
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

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void RunContiguousRunsEveryTaskExactlyOnce(int threads)
    {
        using var pool = new WorkerPool(threads);
        foreach (int count in new[] { 0, 1, 2, 3, 7, 1000 })
        {
            var job = new MarkJob { Hits = new int[count] };
            pool.RunContiguous(count, ref job);
            Assert.All(job.Hits, h => Assert.Equal(1, h));
        }
    }

    /// <summary>The contiguous order's promise, whatever the timing: participant p owns the run
    /// [count·p/P, count·(p+1)/P); it takes its own tasks from the front in order without gaps, the others take what
    /// they take of it from its back end (each in descending order), and every task runs once.</summary>
    [Theory]
    [InlineData(2, 10)]
    [InlineData(2, 333)]
    [InlineData(3, 100)]
    [InlineData(4, 1001)]
    public void RunContiguousTakesOwnRunFromTheFrontAndStealsFromTheBack(int threads, int count)
    {
        using var pool = new WorkerPool(threads);
        for (int repeat = 0; repeat < 20; repeat++)
        {
            var job = new RecordJob { ByWorker = Enumerable.Range(0, threads).Select(_ => new List<int>()).ToArray() };
            pool.RunContiguous(count, ref job);
            int participants = Math.Min(threads, count);
            int RunOf(int task) => Enumerable.Range(0, participants).First(p => task < (long)count * (p + 1) / participants);
            Assert.Equal(Enumerable.Range(0, count), job.ByWorker.SelectMany(l => l).Order());
            for (int w = 0; w < threads; w++)
            {
                var own = job.ByWorker[w].Where(t => RunOf(t) == w).ToList();
                int front = (int)((long)count * w / participants);
                Assert.Equal(Enumerable.Range(front, own.Count), own);
                foreach (var stolen in job.ByWorker[w].Where(t => RunOf(t) != w).GroupBy(RunOf))
                    Assert.Equal(stolen.OrderDescending(), stolen); // each thief walks a run from its back end
            }
            for (int p = 0; p < participants; p++)
            {
                // What the others took from run p is its last tasks (several thieves may interleave there).
                var stolen = job.ByWorker.Where((_, w) => w != p).SelectMany(l => l).Where(t => RunOf(t) == p).Order().ToList();
                int back = (int)((long)count * (p + 1) / participants);
                Assert.Equal(Enumerable.Range(back - stolen.Count, stolen.Count), stolen);
            }
        }
    }
}
