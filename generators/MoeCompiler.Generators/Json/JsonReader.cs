using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace MoeCompiler.Generators.Json
{
    /// <summary>Why a document is not JSON, and where.</summary>
    internal sealed class JsonSyntaxError
    {
        public JsonSyntaxError(string message, JsonPosition position)
        {
            Message = message;
            Position = position;
        }

        public string Message { get; }
        public JsonPosition Position { get; }
    }

    /// <summary>
    /// A strict RFC 8259 reader (no comments, no trailing commas, no NaN) that records the line and column of
    /// every value. Duplicate keys are kept in order; the spec parser reports them. It never throws on bad input:
    /// the first syntax error is returned instead.
    /// </summary>
    internal sealed class JsonReader
    {
        private const int MaxDepth = 64;
        private readonly string _text;
        private int _offset;
        private int _line;
        private int _column;
        private JsonSyntaxError? _error;

        private JsonReader(string text) => _text = text;

        public static JsonNode? Parse(string text, out JsonSyntaxError? error)
        {
            var reader = new JsonReader(text);
            // A UTF-8 byte order mark decoded into the string is not part of the document.
            if (text.Length > 0 && text[0] == '\uFEFF') reader._offset = 1;
            reader.SkipWhitespace();
            JsonNode? root = reader.ReadValue(0);
            if (root is not null)
            {
                reader.SkipWhitespace();
                if (reader._offset < text.Length) reader.Fail("unexpected '" + text[reader._offset] + "' after the end of the document");
            }

            error = reader._error;
            return error is null ? root : null;
        }

        private JsonNode? ReadValue(int depth)
        {
            if (depth > MaxDepth) return Fail("nesting deeper than " + MaxDepth.ToString(CultureInfo.InvariantCulture) + " levels");
            if (_offset >= _text.Length) return Fail("unexpected end of file, expected a value");
            char c = _text[_offset];
            switch (c)
            {
                case '{': return ReadObject(depth);
                case '[': return ReadArray(depth);
                case '"': return ReadString();
                case 't': return ReadLiteral("true", p => new JsonBoolean(p, true));
                case 'f': return ReadLiteral("false", p => new JsonBoolean(p, false));
                case 'n': return ReadLiteral("null", p => new JsonNull(p));
                default:
                    if (c == '-' || (c >= '0' && c <= '9')) return ReadNumber();
                    return Fail("unexpected '" + Printable(c) + "', expected a value");
            }
        }

        private JsonNode? ReadObject(int depth)
        {
            int startOffset = _offset, startLine = _line, startColumn = _column;
            Advance(); // {
            var properties = new List<JsonProperty>();
            SkipWhitespace();
            if (Peek() == '}')
            {
                Advance();
                return new JsonObject(PositionFrom(startOffset, startLine, startColumn), properties);
            }

            while (true)
            {
                SkipWhitespace();
                if (Peek() != '"') return Fail(_offset >= _text.Length ? "unexpected end of file inside an object" : "expected a property name in double quotes");
                var name = (JsonString?)ReadString();
                if (name is null) return null;
                SkipWhitespace();
                if (Peek() != ':') return Fail("expected ':' after property name '" + name.Value + "'");
                Advance();
                SkipWhitespace();
                JsonNode? value = ReadValue(depth + 1);
                if (value is null) return null;
                properties.Add(new JsonProperty(name.Value, name.Position, value));
                SkipWhitespace();
                char next = Peek();
                if (next == ',')
                {
                    Advance();
                    SkipWhitespace();
                    if (Peek() == '}') return Fail("trailing comma before '}'");
                    continue;
                }

                if (next == '}')
                {
                    Advance();
                    return new JsonObject(PositionFrom(startOffset, startLine, startColumn), properties);
                }

                return Fail(_offset >= _text.Length ? "unexpected end of file inside an object" : "expected ',' or '}' after a property value");
            }
        }

        private JsonNode? ReadArray(int depth)
        {
            int startOffset = _offset, startLine = _line, startColumn = _column;
            Advance(); // [
            var items = new List<JsonNode>();
            SkipWhitespace();
            if (Peek() == ']')
            {
                Advance();
                return new JsonArray(PositionFrom(startOffset, startLine, startColumn), items);
            }

            while (true)
            {
                SkipWhitespace();
                JsonNode? item = ReadValue(depth + 1);
                if (item is null) return null;
                items.Add(item);
                SkipWhitespace();
                char next = Peek();
                if (next == ',')
                {
                    Advance();
                    SkipWhitespace();
                    if (Peek() == ']') return Fail("trailing comma before ']'");
                    continue;
                }

                if (next == ']')
                {
                    Advance();
                    return new JsonArray(PositionFrom(startOffset, startLine, startColumn), items);
                }

                return Fail(_offset >= _text.Length ? "unexpected end of file inside an array" : "expected ',' or ']' after an array item");
            }
        }

        private JsonNode? ReadString()
        {
            int startOffset = _offset, startLine = _line, startColumn = _column;
            Advance(); // opening quote
            var builder = new StringBuilder();
            while (true)
            {
                if (_offset >= _text.Length) return Fail("unterminated string");
                char c = _text[_offset];
                if (c == '"')
                {
                    Advance();
                    return new JsonString(PositionFrom(startOffset, startLine, startColumn), builder.ToString());
                }

                if (c == '\n' || c == '\r') return Fail("unterminated string (line break inside a string)");
                if (c < ' ') return Fail("control character U+" + ((int)c).ToString("X4", CultureInfo.InvariantCulture) + " inside a string must be escaped");
                if (c != '\\')
                {
                    builder.Append(c);
                    Advance();
                    continue;
                }

                Advance();
                if (_offset >= _text.Length) return Fail("unterminated string");
                char e = _text[_offset];
                switch (e)
                {
                    case '"': builder.Append('"'); break;
                    case '\\': builder.Append('\\'); break;
                    case '/': builder.Append('/'); break;
                    case 'b': builder.Append('\b'); break;
                    case 'f': builder.Append('\f'); break;
                    case 'n': builder.Append('\n'); break;
                    case 'r': builder.Append('\r'); break;
                    case 't': builder.Append('\t'); break;
                    case 'u':
                        if (_offset + 4 >= _text.Length) return Fail("incomplete \\u escape");
                        int code = 0;
                        for (int i = 1; i <= 4; i++)
                        {
                            int digit = HexValue(_text[_offset + i]);
                            if (digit < 0) return Fail("invalid \\u escape");
                            code = (code << 4) | digit;
                        }

                        builder.Append((char)code);
                        for (int i = 0; i < 4; i++) Advance();
                        break;
                    default:
                        return Fail("invalid escape '\\" + Printable(e) + "'");
                }

                Advance();
            }
        }

        private JsonNode? ReadNumber()
        {
            int startOffset = _offset, startLine = _line, startColumn = _column;
            bool isInteger = true;
            if (Peek() == '-') Advance();
            if (Peek() == '0')
            {
                Advance();
                if (IsDigit(Peek())) return Fail("numbers must not have leading zeros");
            }
            else if (IsDigit(Peek()))
            {
                while (IsDigit(Peek())) Advance();
            }
            else
            {
                return Fail("expected a digit");
            }

            if (Peek() == '.')
            {
                isInteger = false;
                Advance();
                if (!IsDigit(Peek())) return Fail("expected a digit after the decimal point");
                while (IsDigit(Peek())) Advance();
            }

            if (Peek() == 'e' || Peek() == 'E')
            {
                isInteger = false;
                Advance();
                if (Peek() == '+' || Peek() == '-') Advance();
                if (!IsDigit(Peek())) return Fail("expected a digit in the exponent");
                while (IsDigit(Peek())) Advance();
            }

            string text = _text.Substring(startOffset, _offset - startOffset);
            double value = double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
            if (double.IsInfinity(value)) return Fail("number " + text + " is out of range");
            return new JsonNumber(PositionFrom(startOffset, startLine, startColumn), text, value, isInteger);
        }

        private delegate JsonNode LiteralFactory(JsonPosition position);

        private JsonNode? ReadLiteral(string literal, LiteralFactory create)
        {
            int startOffset = _offset, startLine = _line, startColumn = _column;
            if (string.CompareOrdinal(_text, _offset, literal, 0, literal.Length) != 0 ||
                (_offset + literal.Length < _text.Length && char.IsLetterOrDigit(_text[_offset + literal.Length])))
            {
                int end = _offset;
                while (end < _text.Length && char.IsLetterOrDigit(_text[end])) end++;
                return Fail("unexpected '" + _text.Substring(_offset, end - _offset) + "', expected a value (strings need double quotes)");
            }

            for (int i = 0; i < literal.Length; i++) Advance();
            return create(PositionFrom(startOffset, startLine, startColumn));
        }

        private void SkipWhitespace()
        {
            while (_offset < _text.Length)
            {
                char c = _text[_offset];
                if (c == ' ' || c == '\t' || c == '\n' || c == '\r') Advance();
                else if (c == '/' && _offset + 1 < _text.Length && (_text[_offset + 1] == '/' || _text[_offset + 1] == '*'))
                {
                    Fail("comments are not allowed in JSON");
                    _offset = _text.Length;
                }
                else break;
            }
        }

        private char Peek() => _offset < _text.Length ? _text[_offset] : '\0';

        private void Advance()
        {
            char c = _text[_offset];
            _offset++;
            if (c == '\n' || (c == '\r' && Peek() != '\n'))
            {
                _line++;
                _column = 0;
            }
            else if (c != '\r')
            {
                _column++;
            }
        }

        private JsonPosition PositionFrom(int startOffset, int startLine, int startColumn) =>
            new JsonPosition(startOffset, _offset - startOffset, startLine, startColumn, _line, _column);

        private JsonNode? Fail(string message)
        {
            if (_error is null)
            {
                int length = _offset < _text.Length ? 1 : 0;
                _error = new JsonSyntaxError(message, new JsonPosition(_offset, length, _line, _column, _line, _column + length));
            }

            return null;
        }

        private static bool IsDigit(char c) => c >= '0' && c <= '9';

        private static int HexValue(char c)
        {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        }

        private static string Printable(char c) => c < ' ' ? "U+" + ((int)c).ToString("X4", CultureInfo.InvariantCulture) : c.ToString();
    }
}
