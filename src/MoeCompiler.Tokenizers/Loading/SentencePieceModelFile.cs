using System.Text;
using MoeCompiler.Tokenizers.Bpe;

namespace MoeCompiler.Tokenizers.Loading;

/// <summary>Reads a SentencePiece tokenizer.model (a protobuf ModelProto) with just the fields BPE encoding
/// needs, and builds the tokenizer. SentencePiece merges the adjacent pair whose concatenation is the piece
/// with the highest score (leftmost on ties), so pieces are ranked by score, equal scores sharing a rank.</summary>
internal static class SentencePieceModelFile
{
    private enum PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 }

    private sealed record Piece(string Text, float Score, PieceType Type);

    public static SentencePieceBpeTokenizer Load(string path, IReadOnlyList<AddedToken>? extraAdded = null, IReadOnlyList<int>? eosOverride = null, bool addBos = true)
    {
        byte[] data = MoeCompiler.IO.RegularFile.ReadAllBytes(path, TokenizerFiles.MaxVocabularyBytes, (problem, inner) => new TokenizerLoadException(path, problem, inner));

        var pieces = new List<Piece>();
        int modelType = 1; // UNIGRAM is the protobuf default
        bool byteFallback = false, addDummyPrefix = true, removeExtraWhitespace = true;
        int unkId = 0, bosId = 1, eosId = 2;
        bool hasCharsMap = false;
        try
        {
            var root = new ProtoReader(data);
            while (root.Next(out int field, out int wire))
            {
                switch (field)
                {
                    case 1 when wire == 2: pieces.Add(ReadPiece(root.ReadBytes())); break;
                    case 2 when wire == 2:
                        var trainer = new ProtoReader(root.ReadBytes());
                        while (trainer.Next(out int f, out int w))
                        {
                            if (w != 0) { trainer.Skip(w); continue; }
                            long v = trainer.ReadVarint();
                            switch (f)
                            {
                                case 3: modelType = (int)v; break;
                                case 35: byteFallback = v != 0; break;
                                case 40: unkId = (int)v; break;
                                case 41: bosId = (int)v; break;
                                case 42: eosId = (int)v; break;
                            }
                        }
                        break;
                    case 3 when wire == 2:
                        var normalizer = new ProtoReader(root.ReadBytes());
                        while (normalizer.Next(out int f, out int w))
                        {
                            if (f == 2 && w == 2) { hasCharsMap = normalizer.ReadBytes().Length > 0; continue; }
                            if (w != 0) { normalizer.Skip(w); continue; }
                            long v = normalizer.ReadVarint();
                            if (f == 3) addDummyPrefix = v != 0;
                            else if (f == 4) removeExtraWhitespace = v != 0;
                        }
                        break;
                    default: root.Skip(wire); break;
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or IndexOutOfRangeException or ArgumentOutOfRangeException or DecoderFallbackException)
        {
            throw new TokenizerLoadException(path, "not a valid SentencePiece model protobuf: " + e.Message, e);
        }

        if (pieces.Count == 0) throw new TokenizerLoadException(path, "the model has no pieces");
        if (unkId < 0 || unkId >= pieces.Count) throw new TokenizerLoadException(path, $"unk_id {unkId} is not a piece");
        if (bosId >= pieces.Count || eosId >= pieces.Count) throw new TokenizerLoadException(path, "bos_id or eos_id is not a piece");
        if (modelType != 2) throw new TokenizerLoadException(path, $"model type {modelType} is not BPE (2); only BPE SentencePiece models are supported");
        if (hasCharsMap) throw new TokenizerLoadException(path, "the model has a precompiled normalization charsmap; only identity normalization is supported");

        var vocab = new Dictionary<string, int>();
        var added = new List<AddedToken>();
        for (int id = 0; id < pieces.Count; id++)
        {
            Piece piece = pieces[id];
            vocab.TryAdd(piece.Text, id);
            if (piece.Type is PieceType.Control or PieceType.Unknown) added.Add(new AddedToken(piece.Text, id, IsSpecial: true));
            else if (piece.Type is PieceType.UserDefined) added.Add(new AddedToken(piece.Text, id, IsSpecial: false));
        }
        if (extraAdded is not null) added.AddRange(extraAdded.Where(x => !added.Any(a => a.Id == x.Id)));

        // Rank = position of the score among distinct scores, highest first.
        var distinctScores = pieces.Where(p => p.Type == PieceType.Normal).Select(p => p.Score).Distinct().OrderByDescending(s => s).ToList();
        var rankOfScore = new Dictionary<float, int>();
        for (int i = 0; i < distinctScores.Count; i++) rankOfScore[distinctScores[i]] = i;

        var merges = new PairMergeTable(pieces.Count * 4);
        var lookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        for (int id = 0; id < pieces.Count; id++)
        {
            Piece piece = pieces[id];
            if (piece.Type != PieceType.Normal) continue;
            ReadOnlySpan<char> text = piece.Text;
            for (int split = 1; split < text.Length; split++)
            {
                if (char.IsLowSurrogate(text[split])) continue;
                if (lookup.TryGetValue(text[..split], out int left) && lookup.TryGetValue(text[split..], out int right)
                    && IsMergeable(pieces[left]) && IsMergeable(pieces[right]))
                    merges.Add(left, right, rankOfScore[piece.Score], id);
            }
        }

        string[] texts = pieces.Select(p => p.Text).ToArray();
        int[]? fallback = byteFallback ? BpeVocabulary.ByteFallbackIds(path, vocab) : null;
        int size = Math.Max(texts.Length, extraAdded is { Count: > 0 } ? extraAdded.Max(a => a.Id) + 1 : 0);
        if (size > texts.Length)
        {
            Array.Resize(ref texts, size);
            foreach (AddedToken a in added) texts[a.Id] ??= a.Content;
        }
        return new SentencePieceBpeTokenizer(texts, merges, fallback, unkId, addDummyPrefix, removeExtraWhitespace, added, size,
            addBos && bosId >= 0 ? bosId : null, eosOverride ?? (eosId >= 0 ? [eosId] : []));
    }

    private static bool IsMergeable(Piece p) => p.Type is PieceType.Normal or PieceType.UserDefined;

    private static Piece ReadPiece(ReadOnlySpan<byte> data)
    {
        var reader = new ProtoReader(data.ToArray());
        string text = "";
        float score = 0;
        var type = PieceType.Normal;
        while (reader.Next(out int field, out int wire))
        {
            if (field == 1 && wire == 2) text = new UTF8Encoding(false, true).GetString(reader.ReadBytes());
            else if (field == 2 && wire == 5) score = BitConverter.Int32BitsToSingle(reader.ReadFixed32());
            else if (field == 3 && wire == 0) type = (PieceType)reader.ReadVarint();
            else reader.Skip(wire);
        }
        return new Piece(text, score, type);
    }

    /// <summary>The four protobuf wire types a ModelProto uses.</summary>
    private sealed class ProtoReader(byte[] data)
    {
        private int _position;

        public bool Next(out int field, out int wire)
        {
            field = wire = 0;
            if (_position >= data.Length) return false;
            long key = ReadVarint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            if (field <= 0) throw new InvalidDataException($"invalid field number at byte {_position}");
            return true;
        }

        public long ReadVarint()
        {
            long value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_position >= data.Length) throw new InvalidDataException("truncated varint");
                byte b = data[_position++];
                value |= (long)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return value;
            }
            throw new InvalidDataException("varint longer than 10 bytes");
        }

        public int ReadFixed32()
        {
            if (_position + 4 > data.Length) throw new InvalidDataException("truncated fixed32");
            int v = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(_position));
            _position += 4;
            return v;
        }

        public byte[] ReadBytes()
        {
            long length = ReadVarint();
            if (length < 0 || length > data.Length - _position) throw new InvalidDataException("length-delimited field runs past the end");
            byte[] bytes = data.AsSpan(_position, (int)length).ToArray();
            _position += (int)length;
            return bytes;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: ReadVarint(); break;
                case 1: Advance(8); break;
                case 2: ReadBytes(); break;
                case 5: Advance(4); break;
                default: throw new InvalidDataException($"unsupported wire type {wire}");
            }
        }

        private void Advance(int n)
        {
            if (_position + n > data.Length) throw new InvalidDataException("truncated field");
            _position += n;
        }
    }
}
