using System.Globalization;
using MoeCompiler.Benchmarks;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

string command = args.Length > 0 ? args[0] : "help";
var options = BenchOptions.Parse(args.Skip(1).ToArray());
switch (command)
{
    case "kernels":
        KernelBenchmarks.Run(options);
        return 0;
    case "gemm" or "decode" or "layer":
        KernelBenchmarks.Run(options, command);
        return 0;
    case "gemmab":
        GemmAB.Run(options);
        return 0;
    case "rows":
        RowBenchmarks.Run(options);
        return 0;
    case "rows-stream":
        RowStreamBenchmarks.Run(options);
        return 0;
    case "rows-tiling":
        RowTilingBenchmarks.Run(options);
        return 0;
    case "intdot":
        IntegerDotBenchmarks.Run(options);
        return 0;
    case "igemm":
        IntegerGemmBenchmarks.Run(options);
        return 0;
    case "limits":
        Limits.Measure(options).Print();
        return 0;
    default:
        Console.WriteLine("""
            usage: dotnet run -c Release --project benchmarks/MoeCompiler.Benchmarks -- <command> [options]
              kernels   machine limits (FMA peak, read bandwidth), then GEMM vs OpenBLAS, decode matrix-vector
                        (bf16, int8), attention at 600 tokens and MoE dispatch, each as a fraction of its limit
              limits    only the machine limits
              intdot    int8/q4 decode: f32 activations vs the integer path (with/without AvxVnni), same run
              igemm     int8/q4 prefill (m > 4): dequantise-to-f32 GEMM vs the integer GEMM (AvxVnni), same run
              gemm | decode | layer    the limits and one part of "kernels"
              gemmab    prefill/expert/vision GEMM shapes (packed bf16), depth-block variants (env GEMMAB_KC, default
                        1024,256) alternating round by round, GFLOP/s, share of FMA peak, share spent packing weights
              rows      batched decode: packed bf16 LinearRows for 1, 2, 4, 8 rows (time against one row)
              rows-stream  the same for 1-4 rows on weights streamed from memory (copies cycled), rounds alternating
              rows-tiling  1 weight row x 4 activation rows against 2 x 2 register tiles (synthetic packed blocks)
            options:
              --threads N    pool size (default: all cores)
              --quick        fewer repetitions (a sanity run, numbers are rough)
              --no-blas      skip OpenBLAS
              --cpu-time     time by process CPU time, not wall time (for a busy machine; use with --threads 1)
            """);
        return command == "help" ? 0 : 2;
}
