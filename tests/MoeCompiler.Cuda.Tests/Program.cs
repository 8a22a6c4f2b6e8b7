using System.Diagnostics;
using System.Reflection;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace MoeCompiler.Cuda.Tests;

/// <summary>
/// Entry point of the published device app (scripts/gpu). <c>device-tests [name-filter]</c> runs every fact and
/// inline-data theory of this assembly in-process (no test host on the device machine); <c>bench</c> runs
/// <see cref="DeviceBenchmarks"/>. Under <c>dotnet test</c> this entry point is not used.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        string mode = args.Length > 0 ? args[0] : "device-tests";
        return mode switch
        {
            "device-tests" => DeviceTestRunner.Run(args.Length > 1 ? args[1] : null),
            "bench" => DeviceBenchmarks.Run(args.Skip(1).ToArray()),
            // The `moe` tool itself (e.g. `moe bench MoeLlavaQwen4e --device cuda`), so the one published app also
            // runs the command line on a device machine without a .NET SDK.
            "moe" => MoeCompiler.Cli.MoeCommandLine.Run(args.Skip(1).ToArray()),
            _ => Usage(),
        };
    }

    private static int Usage()
    {
        Console.Error.WriteLine("usage: MoeCompiler.Cuda.Tests device-tests [name-filter] | bench [--peak-gbps N] [--peak-tflops N] | moe <moe command line>");
        return 2;
    }
}

/// <summary>A minimal xunit-compatible runner: facts and [InlineData] theories, skips honoured, output shown.</summary>
internal static class DeviceTestRunner
{
    private sealed class ConsoleOutput : ITestOutputHelper
    {
        public void WriteLine(string message) => Console.WriteLine("      " + message.Replace("\n", "\n      "));
        public void WriteLine(string format, params object[] args) => WriteLine(string.Format(System.Globalization.CultureInfo.InvariantCulture, format, args));
    }

    public static int Run(string? filter)
    {
        Console.WriteLine(CudaProbe.TryFindDevice(out string device) ? "device: " + device : device);
        int passed = 0, failed = 0, skipped = 0;
        var failures = new List<string>();
        var types = typeof(DeviceTestRunner).Assembly.GetTypes().Where(t => t.IsPublic && !t.IsAbstract).OrderBy(t => t.FullName, StringComparer.Ordinal);
        foreach (var type in types)
        {
            foreach (var method in type.GetMethods(BindingFlags.Public | BindingFlags.Instance).OrderBy(m => m.MetadataToken))
            {
                var fact = method.GetCustomAttribute<FactAttribute>();
                if (fact is null) continue;
                string name = type.Name + "." + method.Name;
                if (filter is not null && !name.Contains(filter, StringComparison.OrdinalIgnoreCase)) continue;
                var cases = fact is TheoryAttribute
                    ? method.GetCustomAttributes<InlineDataAttribute>().Select(d => d.GetData(method).First()).ToList()
                    : [Array.Empty<object>()];
                if (cases.Count == 0)
                {
                    Console.WriteLine($"SKIP {name}: theory without inline data is not supported by this runner");
                    skipped++;
                    continue;
                }
                foreach (var arguments in cases)
                {
                    string label = arguments.Length == 0 ? name : $"{name}({string.Join(", ", arguments.Select(a => Convert.ToString(a, System.Globalization.CultureInfo.InvariantCulture)))})";
                    if (fact.Skip is not null)
                    {
                        Console.WriteLine($"SKIP {label}: {fact.Skip}");
                        skipped++;
                        continue;
                    }
                    var watch = Stopwatch.StartNew();
                    try
                    {
                        RunOne(type, method, arguments);
                        Console.WriteLine($"PASS {label} ({watch.ElapsedMilliseconds} ms)");
                        passed++;
                    }
                    catch (Exception e)
                    {
                        var inner = e is TargetInvocationException { InnerException: { } ie } ? ie : e;
                        Console.WriteLine($"FAIL {label} ({watch.ElapsedMilliseconds} ms)\n      {inner.GetType().Name}: {inner.Message.Replace("\n", "\n      ")}");
                        failures.Add(label);
                        failed++;
                    }
                }
            }
        }
        Console.WriteLine($"\n{passed} passed, {failed} failed, {skipped} skipped");
        foreach (string f in failures) Console.WriteLine("  failed: " + f);
        return failed == 0 ? 0 : 1;
    }

    private static void RunOne(Type type, MethodInfo method, object[] arguments)
    {
        var constructor = type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).First();
        object instance = constructor.GetParameters().Length == 1 && constructor.GetParameters()[0].ParameterType == typeof(ITestOutputHelper)
            ? constructor.Invoke([new ConsoleOutput()])
            : constructor.Invoke([]);
        try
        {
            var parameters = method.GetParameters();
            var converted = arguments.Select((a, i) => a is null || parameters[i].ParameterType.IsInstanceOfType(a)
                ? a : Convert.ChangeType(a, parameters[i].ParameterType, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            method.Invoke(instance, converted);
        }
        finally
        {
            (instance as IDisposable)?.Dispose();
        }
    }
}
