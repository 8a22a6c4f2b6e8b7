using System.Collections.Generic;

namespace MoeCompiler.Generators.Json
{
    /// <summary>Where a JSON value sits in its file: character offset and length, 0-based line and column.</summary>
    internal readonly struct JsonPosition : System.IEquatable<JsonPosition>
    {
        public JsonPosition(int offset, int length, int line, int column, int endLine, int endColumn)
        {
            Offset = offset;
            Length = length;
            Line = line;
            Column = column;
            EndLine = endLine;
            EndColumn = endColumn;
        }

        public int Offset { get; }
        public int Length { get; }
        public int Line { get; }
        public int Column { get; }
        public int EndLine { get; }
        public int EndColumn { get; }

        public bool Equals(JsonPosition other) =>
            Offset == other.Offset && Length == other.Length && Line == other.Line && Column == other.Column &&
            EndLine == other.EndLine && EndColumn == other.EndColumn;

        public override bool Equals(object? obj) => obj is JsonPosition other && Equals(other);

        public override int GetHashCode() => unchecked((Offset * 397) ^ Length);
    }

    internal enum JsonKind
    {
        Object,
        Array,
        String,
        Number,
        Boolean,
        Null,
    }

    /// <summary>A parsed JSON value that remembers where it came from.</summary>
    internal abstract class JsonNode
    {
        protected JsonNode(JsonPosition position) => Position = position;

        public JsonPosition Position { get; }
        public abstract JsonKind Kind { get; }

        /// <summary>The JSON type name used in diagnostics ("object", "string", ...).</summary>
        public string TypeName => Kind switch
        {
            JsonKind.Object => "object",
            JsonKind.Array => "array",
            JsonKind.String => "string",
            JsonKind.Number => "number",
            JsonKind.Boolean => "boolean",
            _ => "null",
        };
    }

    internal sealed class JsonProperty
    {
        public JsonProperty(string name, JsonPosition namePosition, JsonNode value)
        {
            Name = name;
            NamePosition = namePosition;
            Value = value;
        }

        public string Name { get; }
        public JsonPosition NamePosition { get; }
        public JsonNode Value { get; }
    }

    internal sealed class JsonObject : JsonNode
    {
        public JsonObject(JsonPosition position, IReadOnlyList<JsonProperty> properties) : base(position)
            => Properties = properties;

        public IReadOnlyList<JsonProperty> Properties { get; }
        public override JsonKind Kind => JsonKind.Object;

        /// <summary>The position of the opening brace only (missing-key diagnostics point there).</summary>
        public JsonPosition OpeningBrace =>
            new JsonPosition(Position.Offset, 1, Position.Line, Position.Column, Position.Line, Position.Column + 1);
    }

    internal sealed class JsonArray : JsonNode
    {
        public JsonArray(JsonPosition position, IReadOnlyList<JsonNode> items) : base(position) => Items = items;

        public IReadOnlyList<JsonNode> Items { get; }
        public override JsonKind Kind => JsonKind.Array;
    }

    internal sealed class JsonString : JsonNode
    {
        public JsonString(JsonPosition position, string value) : base(position) => Value = value;

        public string Value { get; }
        public override JsonKind Kind => JsonKind.String;
    }

    internal sealed class JsonNumber : JsonNode
    {
        public JsonNumber(JsonPosition position, string text, double value, bool isInteger) : base(position)
        {
            Text = text;
            Value = value;
            IsInteger = isInteger;
        }

        /// <summary>The literal as written (for exact integer conversion).</summary>
        public string Text { get; }
        public double Value { get; }
        /// <summary>True when written without fraction or exponent.</summary>
        public bool IsInteger { get; }
        public override JsonKind Kind => JsonKind.Number;
    }

    internal sealed class JsonBoolean : JsonNode
    {
        public JsonBoolean(JsonPosition position, bool value) : base(position) => Value = value;

        public bool Value { get; }
        public override JsonKind Kind => JsonKind.Boolean;
    }

    internal sealed class JsonNull : JsonNode
    {
        public JsonNull(JsonPosition position) : base(position)
        {
        }

        public override JsonKind Kind => JsonKind.Null;
    }
}
