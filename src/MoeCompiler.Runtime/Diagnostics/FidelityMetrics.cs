using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Runtime.Diagnostics;

/// <summary>
/// How closely a run (quantised weights) follows a reference run (f32 weights) over the same positions
/// (docs/quantization.md): next-token top-1 agreement, mean KL(reference ‖ run) of the softmax, the largest logit error
/// relative to the reference's largest |logit|, and per MoE layer the share of tokens routed to the same expert set.
/// </summary>
public sealed record FidelityMetrics(int Positions, double Top1Agreement, double MeanKl, double MaxRelativeLogitError,
    IReadOnlyList<(string Site, int Layer, double Agreement)> Routing, int DecisivePositions, double DecisiveTop1Agreement)
{
    /// <summary>A position is decisive when the reference's top-1 logit beats its runner-up by at least this share of the
    /// standard deviation of that position's logits. Random weights give nearly flat next-token distributions whose
    /// top two are often closer than any rounding (bf16 included) moves them; trained models rarely do.</summary>
    public const double DecisiveMargin = 0.1;

    /// <summary>Compares logits [positions, vocab] row by row (double precision throughout).</summary>
    public static FidelityMetrics Compare(ReadOnlySpan<float> reference, ReadOnlySpan<float> run, int vocab,
        IReadOnlyList<RoutingRecord>? referenceRouting = null, IReadOnlyList<RoutingRecord>? runRouting = null)
    {
        if (vocab <= 0 || reference.Length != run.Length || reference.Length % vocab != 0)
            throw new ArgumentException($"logits of {reference.Length} and {run.Length} values do not form rows of {vocab}");
        int positions = reference.Length / vocab;
        int agree = 0, decisive = 0, decisiveAgree = 0;
        double kl = 0, maxError = 0, maxReference = 0;
        for (int p = 0; p < positions; p++)
        {
            var r = reference.Slice(p * vocab, vocab);
            var q = run.Slice(p * vocab, vocab);
            bool same = ArgMax(r) == ArgMax(q);
            if (same) agree++;
            double margin = Margin(r);
            if (margin > 0 && margin >= DecisiveMargin * StandardDeviation(r))
            {
                decisive++;
                if (same) decisiveAgree++;
            }
            double rMax = Max(r), qMax = Max(q), rSum = 0, qSum = 0;
            for (int i = 0; i < vocab; i++)
            {
                rSum += Math.Exp(r[i] - rMax);
                qSum += Math.Exp(q[i] - qMax);
                maxError = Math.Max(maxError, Math.Abs((double)r[i] - q[i]));
                maxReference = Math.Max(maxReference, Math.Abs((double)r[i]));
            }
            double rLog = rMax + Math.Log(rSum), qLog = qMax + Math.Log(qSum), sum = 0;
            for (int i = 0; i < vocab; i++)
            {
                double logP = r[i] - rLog, logQ = q[i] - qLog;
                sum += Math.Exp(logP) * (logP - logQ);
            }
            kl += Math.Max(0, sum);
        }
        var routing = new List<(string, int, double)>();
        if (referenceRouting is not null && runRouting is not null)
            foreach (var a in referenceRouting)
            {
                var b = runRouting.FirstOrDefault(x => x.Call == a.Call && x.Site == a.Site && x.Layer == a.Layer && x.Tokens == a.Tokens);
                if (b is null) continue;
                int same = 0;
                for (int t = 0; t < a.Tokens; t++)
                {
                    var sa = a.ChosenExperts.AsSpan(t * a.TopK, a.TopK).ToArray().Order();
                    var sb = b.ChosenExperts.AsSpan(t * b.TopK, b.TopK).ToArray().Order();
                    if (sa.SequenceEqual(sb)) same++;
                }
                routing.Add((a.Site, a.Layer, a.Tokens == 0 ? 1 : (double)same / a.Tokens));
            }
        return new FidelityMetrics(positions, positions == 0 ? 1 : (double)agree / positions, positions == 0 ? 0 : kl / positions,
            maxReference == 0 ? maxError : maxError / maxReference, routing, decisive, decisive == 0 ? 1 : (double)decisiveAgree / decisive);
    }

    private static double Margin(ReadOnlySpan<float> values)
    {
        float first = float.NegativeInfinity, second = float.NegativeInfinity;
        foreach (float v in values)
        {
            if (v > first) { second = first; first = v; }
            else if (v > second) second = v;
        }
        return (double)first - second;
    }

    private static double StandardDeviation(ReadOnlySpan<float> values)
    {
        double mean = 0, square = 0;
        foreach (float v in values) mean += v;
        mean /= values.Length;
        foreach (float v in values) square += (v - mean) * (v - mean);
        return Math.Sqrt(square / values.Length);
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    private static double Max(ReadOnlySpan<float> values)
    {
        float max = float.NegativeInfinity;
        foreach (float v in values) max = Math.Max(max, v);
        return max;
    }

    public override string ToString() =>
        FormattableString.Invariant($"{Positions} positions: top-1 {Top1Agreement:P2} (on {DecisivePositions} decisive: {DecisiveTop1Agreement:P2}), mean KL {MeanKl:0.000e0}, max rel. logit error {MaxRelativeLogitError:0.000e0}, routing ") +
        string.Join(", ", Routing.Select(r => FormattableString.Invariant($"{r.Site}{r.Layer} {r.Agreement:P1}")));
}
