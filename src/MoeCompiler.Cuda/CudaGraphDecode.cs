namespace MoeCompiler.Cuda;

/// <summary>
/// Runs decode steps as CUDA graphs. Each step is captured afresh (its kernel arguments, such as the position,
/// change every step) and, when the topology matches the previous step, patched into the existing executable
/// graph with cuGraphExecUpdate instead of being re-instantiated; one graph launch then replaces the step's
/// dozens of kernel launches.
/// <para>
/// The step must only queue device work. A step that needs the host to wait for the GPU (a download, e.g.
/// host-side MoE routing) cannot be captured: <see cref="TryRun"/> then returns false without having run any of
/// the step's kernels, and turns itself off (<see cref="DisabledReason"/>) so later steps run eagerly at no cost.
/// The caller runs that step eagerly, so host-side state the step changes must be updated only after its device
/// work has been queued (as the modules do: the KV-cache length is advanced at the end of a forward call).
/// </para>
/// </summary>
public sealed unsafe class CudaGraphDecode : IDisposable
{
    private readonly CudaBackend _backend;
    private nint _exec;

    public CudaGraphDecode(CudaBackend backend)
    {
        _backend = backend;
    }

    public bool Enabled => DisabledReason is null;
    public string? DisabledReason { get; private set; }
    public int Launches { get; private set; }
    public int Instantiations { get; private set; }
    public int Updates { get; private set; }
    /// <summary>Steps that ran eagerly because they needed one-time set-up first (<see cref="GraphSetupNeededException"/>).</summary>
    public int SetupSteps { get; private set; }

    /// <summary>Captures <paramref name="step"/>, launches it as a graph and returns true; false when it cannot be captured.</summary>
    public bool TryRun(Action step)
    {
        ArgumentNullException.ThrowIfNull(step);
        if (!Enabled) return false;
        var driver = _backend.Driver;
        if (Launches == 0) _backend.LoadAllKernels();
        _backend.BeginCapture();
        nint graph;
        try
        {
            step();
        }
        catch (GraphSetupNeededException)
        {
            Abandon();
            SetupSteps++;
            return false; // one-time set-up: this step runs eagerly, the next is captured again
        }
        catch (GraphCaptureException e)
        {
            Abandon();
            DisabledReason = e.Message;
            return false;
        }
        catch
        {
            Abandon();
            throw;
        }
        graph = _backend.EndCapture(throwOnError: true);
        try
        {
            bool updated = false;
            if (_exec != 0 && driver.cuGraphExecUpdate != null)
            {
                Native.CudaDriver.GraphExecUpdateResultInfo info = default;
                updated = driver.cuGraphExecUpdate(_exec, graph, &info) == 0;
                if (updated) Updates++;
            }
            if (!updated)
            {
                if (_exec != 0) driver.cuGraphExecDestroy(_exec);
                _exec = 0;
                nint exec;
                driver.Check(driver.cuGraphInstantiateWithFlags(&exec, graph, 0), "cuGraphInstantiateWithFlags");
                _exec = exec;
                Instantiations++;
            }
            driver.Check(driver.cuGraphLaunch(_exec, _backend.Stream), "cuGraphLaunch");
            Launches++;
            return true;
        }
        finally
        {
            driver.cuGraphDestroy(graph);
        }
    }

    private void Abandon()
    {
        nint broken = _backend.EndCapture(throwOnError: false);
        if (broken != 0) _backend.Driver.cuGraphDestroy(broken);
        _backend.DiscardCapturedHostWork();
    }

    /// <summary>Runs the step as a graph when possible, eagerly otherwise.</summary>
    public void Run(Action step)
    {
        if (!TryRun(step)) step();
    }

    public void Dispose()
    {
        if (_exec != 0) _backend.Driver.cuGraphExecDestroy(_exec);
        _exec = 0;
    }

}
