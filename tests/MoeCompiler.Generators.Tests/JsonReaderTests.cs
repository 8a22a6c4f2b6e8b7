using MoeCompiler.Generators.Json;

namespace MoeCompiler.Generators.Tests;

public class JsonReaderTests
{
    [Fact]
    public void KeepsLineAndColumnOfEveryValue()
    {
        var root = (JsonObject)JsonReader.Parse("{\n  \"a\": [1, 2.5e3],\n\t\"b\": { \"c\": \"x\\u00e9\\n\" }\n}", out var error)!;
        Assert.Null(error);
        var a = (JsonArray)root.Properties[0].Value;
        Assert.Equal((1, 7), (a.Position.Line, a.Position.Column));
        var second = (JsonNumber)a.Items[1];
        Assert.Equal((1, 11, "2.5e3", 2500.0, false), (second.Position.Line, second.Position.Column, second.Text, second.Value, second.IsInteger));
        Assert.True(((JsonNumber)a.Items[0]).IsInteger);
        var b = root.Properties[1];
        Assert.Equal((2, 1), (b.NamePosition.Line, b.NamePosition.Column));
        var c = (JsonString)((JsonObject)b.Value).Properties[0].Value;
        Assert.Equal("x\u00e9\n", c.Value);
        Assert.Equal((2, 13, 2, 24), (c.Position.Line, c.Position.Column, c.Position.EndLine, c.Position.EndColumn));
    }

    [Theory]
    [InlineData("{\"a\": 1,}", 0, 8, "trailing comma")]
    [InlineData("{\"a\": 01}", 0, 7, "leading zeros")]
    [InlineData("{\"a\": NaN}", 0, 6, "expected a value")]
    [InlineData("{\"a\": tru}", 0, 6, "strings need double quotes")]
    [InlineData("{\"a\": 1}\n{}", 1, 0, "after the end of the document")]
    [InlineData("{\"a\": \"b\\q\"}", 0, 9, "invalid escape")]
    [InlineData("{\"a\": [1, 2}", 0, 11, "expected ',' or ']'")]
    [InlineData("{\n  \"a\": 1 /* c */\n}", 1, 9, "comments are not allowed")]
    [InlineData("{\"a\": 1e999}", 0, 11, "out of range")]
    [InlineData("", 0, 0, "unexpected end of file")]
    public void ReportsTheFirstSyntaxErrorWithItsPosition(string text, int line, int column, string message)
    {
        Assert.Null(JsonReader.Parse(text, out var error));
        Assert.NotNull(error);
        Assert.Contains(message, error!.Message, StringComparison.Ordinal);
        Assert.Equal((line, column), (error.Position.Line, error.Position.Column));
    }

    [Fact]
    public void DeepNestingIsAnErrorNotAStackOverflow()
    {
        string text = new string('[', 10_000) + new string(']', 10_000);
        Assert.Null(JsonReader.Parse(text, out var error));
        Assert.Contains("nesting deeper", error!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ByteOrderMarkAndCrLfAreAccepted()
    {
        var root = (JsonObject)JsonReader.Parse("\uFEFF{\r\n\"a\": true\r\n}", out var error)!;
        Assert.Null(error);
        Assert.Equal(1, root.Properties[0].NamePosition.Line);
        Assert.True(((JsonBoolean)root.Properties[0].Value).Value);
    }
}
