using System.Globalization;
using System.Text;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>
    /// Builds C# text with four-space indentation and '\n' line ends on every platform, so output is byte-for-byte
    /// deterministic.
    /// </summary>
    internal sealed class SourceWriter
    {
        private readonly StringBuilder _builder = new StringBuilder();
        private int _indent;

        public void Indent() => _indent++;

        public void Unindent() => _indent--;

        public void Line() => _builder.Append('\n');

        public void Line(string text)
        {
            if (text.Length > 0) _builder.Append(' ', _indent * 4).Append(text);
            _builder.Append('\n');
        }

        /// <summary>
        /// Several lines at the current indentation: a raw string template's lines, each '\n'-separated line indented
        /// like <see cref="Line(string)"/> (so a template keeps only the indentation relative to the block it is in).
        /// </summary>
        public void Lines(string text)
        {
            foreach (string line in text.Split('\n')) Line(line);
        }

        public void Open(string header)
        {
            if (header.Length > 0) Line(header);
            Line("{");
            _indent++;
        }

        public void Close(string suffix = "")
        {
            _indent--;
            Line("}" + suffix);
        }

        /// <summary>A one-line XML doc summary.</summary>
        public void Summary(string text) => Line("/// <summary>" + Xml(text) + "</summary>");

        public override string ToString() => _builder.ToString();

        public static string Xml(string text) => text.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");

        /// <summary>A C# string literal; non-ASCII and control characters are escaped so the file is pure ASCII.</summary>
        public static string Literal(string value)
        {
            var builder = new StringBuilder(value.Length + 2);
            builder.Append('"');
            foreach (char c in value)
            {
                switch (c)
                {
                    case '"': builder.Append("\\\""); break;
                    case '\\': builder.Append("\\\\"); break;
                    case '\n': builder.Append("\\n"); break;
                    case '\r': builder.Append("\\r"); break;
                    case '\t': builder.Append("\\t"); break;
                    default:
                        if (c < ' ' || c > '~') builder.Append("\\u").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture));
                        else builder.Append(c);
                        break;
                }
            }

            return builder.Append('"').ToString();
        }

        /// <summary>Plain ASCII for comments: non-ASCII characters become '?' so files stay ASCII.</summary>
        public static string Ascii(string value)
        {
            var builder = new StringBuilder(value.Length);
            foreach (char c in value) builder.Append(c < ' ' ? ' ' : c > '~' ? '?' : c);
            return builder.ToString();
        }

        public static string Int(int value) => value.ToString(CultureInfo.InvariantCulture);

        public static string Long(long value) => value.ToString(CultureInfo.InvariantCulture) + "L";

        public static string Float(double value) => Number(value) + "f";

        public static string Double(double value)
        {
            string text = Number(value);
            return text.IndexOf('.') >= 0 || text.IndexOf('E') >= 0 ? text : text + ".0";
        }

        public static string Bool(bool value) => value ? "true" : "false";

        private static string Number(double value) => value.ToString("R", CultureInfo.InvariantCulture);

        public static string Grouped(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
    }
}
