using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Runtime.Tests.Modules;

public sealed class RoutingRecorderTests
{
    [Fact]
    public void StatisticsCountAssignmentsPerExpertSplitByModality()
    {
        var recorder = new RoutingRecorder();
        // Call 0, llm layer 0: 4 tokens (2 image), top-2 of 4, one dropped second choice.
        recorder.Record("llm", 0, 0, 4, 2, 4, [0, 1, 0, 2, 3, -1, 1, 0], [0.6f, 0.4f, 0.7f, 0.3f, 1f, 0f, 0.5f, 0.5f],
            [true, true, false, false]);
        recorder.Record("llm", 2, 0, 4, 2, 4, [0, 1, 0, 1, 0, 1, 0, 1], new float[8], [true, true, false, false]);
        // Call 1 (automatic: llm 0 again): one decoded text token.
        recorder.Record("llm", 0, 4, 1, 2, 4, [3, 2], [0.5f, 0.5f], []);
        Assert.Equal(1, recorder.CurrentCall);
        Assert.Equal([0, 0, 1], recorder.Records.Select(r => r.Call));

        var stats = recorder.Statistics();
        Assert.Equal(2, stats.Layers.Count);
        var layer0 = stats.Find("llm", 0)!;
        Assert.Equal(2, layer0.ImageTokens);
        Assert.Equal(3, layer0.TextTokens);
        Assert.Equal([2L, 1, 1, 0], layer0.ImageAssignments);      // image tokens 0, 1: experts 0,1 and 0,2
        Assert.Equal([1L, 1, 1, 2], layer0.TextAssignments);       // text: 3 (2nd dropped), 1,0, decoded 3,2
        Assert.Equal([2L, 0, 0, 0], layer0.ImageFirstChoices);
        Assert.Equal([0L, 1, 0, 2], layer0.TextFirstChoices);
        Assert.Equal(1, layer0.DroppedTextAssignments);
        Assert.Equal(0, layer0.DroppedImageAssignments);
        Assert.Equal([0.5, 0.25, 0.25, 0], layer0.ImageShare);
        Assert.Equal([0.2, 0.2, 0.2, 0.4], layer0.TextShare);
        Assert.Equal(1.0, layer0.AllShare.Sum(), 12);
        Assert.Equal([2 / 3.0, 0.5, 0.5, 0], layer0.ImageFractionPerExpert);
        Assert.Null(stats.Find("vision", 0));

        var json = stats.ToJson();
        Assert.Contains("\"textAssignments\"", json);
        Assert.Contains("\"imageShare\"", json);
        var back = RoutingStatistics.FromJson(json);
        Assert.Equal(layer0.TextAssignments, back.Find("llm", 0)!.TextAssignments);
        Assert.Equal(layer0.ImageShare, back.Find("llm", 0)!.ImageShare);
    }

    [Fact]
    public void BeginCallAndClear()
    {
        var recorder = new RoutingRecorder();
        recorder.BeginCall();
        Assert.Equal(0, recorder.CurrentCall); // nothing recorded yet: no new call
        recorder.Record("vision", 1, 0, 1, 1, 2, [1], [1f], [], allImage: true);
        recorder.BeginCall();
        recorder.Record("vision", 1, 0, 1, 1, 2, [0], [1f], [], allImage: true);
        Assert.Equal([0, 1], recorder.Records.Select(r => r.Call));
        var load = recorder.Statistics().Find("vision", 1)!;
        Assert.Equal([0.5, 0.5], load.ImageShare);
        Assert.Equal([0.0, 0.0], load.TextShare); // no text tokens: zeros, not NaN
        recorder.Clear();
        Assert.Empty(recorder.Records);
        Assert.Empty(recorder.Statistics().Layers);
        Assert.Throws<ArgumentException>(() => recorder.Record("llm", 0, 0, 2, 2, 4, [0, 1], [1f, 0f], []));
    }
}
