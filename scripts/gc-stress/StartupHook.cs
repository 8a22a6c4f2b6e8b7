/// <summary>
/// Loaded into every .NET process through <c>DOTNET_STARTUP_HOOKS</c> by scripts/gc-stress.sh; acts only in test hosts.
/// A background thread collects garbage and runs finalizers every millisecond, so a tensor that becomes unreachable
/// while its memory is still read through a span or pointer is freed at once (and glibc's MALLOC_PERTURB_, set by the
/// script, overwrites freed memory), instead of the read passing by luck.
/// </summary>
internal static class StartupHook
{
    public static void Initialize()
    {
        if (!Environment.CommandLine.Contains("testhost", StringComparison.Ordinal)) return;
        var thread = new Thread(() =>
        {
            while (true)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                Thread.Sleep(1);
            }
        }) { IsBackground = true, Name = "gc-stress" };
        thread.Start();
    }
}
