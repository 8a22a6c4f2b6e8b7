"""Goldens from the real SentencePiece library and the shipped tokenizer.model (mistral-sentencepiece.model):

- encode-sentencepiece-model.jsonl: the texts of encode-sentencepiece.jsonl through sp.encode (SentencePiece never
  matches control symbols such as "<s>" in text, so these ids correspond to encoding with special tokens disabled).
- encode-sentencepiece-nonlegacy.jsonl and prompts-nonlegacy.jsonl: Hugging Face's slow LlamaTokenizer with
  legacy=False (tokenizer_config.json "legacy": false), which MoE-LLaVA / CuMo use when the checkpoint says so.
  transformers is not installed here, so its tokenize/_tokenize logic (transformers 4.36-4.40) is ported below and
  runs over the SentencePiece library with add_dummy_prefix switched off in the model protobuf, as
  LlamaTokenizer.get_spm_processor does.

Rerun with Debian's python3-sentencepiece, after generate_goldens.mjs:
    /usr/bin/python3 tests/MoeCompiler.Tokenizers.Tests/TestData/peer/generate_sentencepiece_goldens.py
Tests only read the committed outputs."""
import json
import os

import sentencepiece

here = os.path.dirname(os.path.abspath(__file__))
model_path = os.path.join(here, "../../../../src/MoeCompiler.Tokenizers/Data/mistral-sentencepiece.model")
model_bytes = open(model_path, "rb").read()
sp = sentencepiece.SentencePieceProcessor(model_proto=model_bytes)


# ---- minimal protobuf rewrite: NormalizerSpec (field 3) add_dummy_prefix (its field 3) = false ----
def varint(value):
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def fields(data):
    i = 0
    while i < len(data):
        start = i
        key, i = read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = read_varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 2:
            n, i = read_varint(data, i)
            i += n
        elif wire == 5:
            i += 4
        else:
            raise ValueError(wire)
        yield field, wire, data[start:i]


def without_dummy_prefix(model):
    out = bytearray()
    for field, wire, raw in fields(model):
        if field == 3 and wire == 2:
            _, j = read_varint(raw, 0)
            n, j = read_varint(raw, j)
            body = raw[j:j + n]
            new_body = b"".join(r for f, w, r in fields(body) if f != 3) + varint(3 << 3) + varint(0)
            out += varint(3 << 3 | 2) + varint(len(new_body)) + new_body
        else:
            out += raw
    return bytes(out)


sp_plain = sentencepiece.SentencePieceProcessor(model_proto=without_dummy_prefix(model_bytes))
assert sp_plain.encode("a", out_type=str) != sp.encode("a", out_type=str)

UNDERLINE = "\u2581"
SPECIALS = ["<unk>", "<s>", "</s>"]
UNK_LENGTH = len(sp_plain.encode("<unk>", out_type=str))


def split_on_specials(text):
    """PreTrainedTokenizer.tokenize's trie split (longest match at the leftmost position)."""
    parts, i, start = [], 0, 0
    while i < len(text):
        match = max((s for s in SPECIALS if text.startswith(s, i)), key=len, default=None)
        if match:
            parts.append(text[start:i])
            parts.append(match)
            i += len(match)
            start = i
        else:
            i += 1
    parts.append(text[start:])
    return parts


def hf_tokenize_nonlegacy(text):
    if not text:
        return []
    text = UNDERLINE + text.replace(UNDERLINE, " ")
    tokens = []
    for part in split_on_specials(text):
        if not part:
            continue
        if part in SPECIALS:
            tokens.append(part)
        elif not part.startswith((UNDERLINE, " ")):
            tokens.extend(sp_plain.encode(part, out_type=str))
        else:
            pieces = sp_plain.encode("<unk>" + part, out_type=str)
            tokens.extend(pieces[UNK_LENGTH:] if len(pieces) >= UNK_LENGTH else pieces)
    if len(tokens) > 1 and tokens[0] == UNDERLINE and tokens[1] in SPECIALS:
        tokens = tokens[1:]
    return [sp.piece_to_id(t) for t in tokens]


def write(name, rows):
    with open(os.path.join(here, name), "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"{name}: {len(rows)} rows")


with open(os.path.join(here, "encode-sentencepiece.jsonl"), encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f if line.strip()]
write("encode-sentencepiece-model.jsonl", [{"text": t, "ids": sp.encode(t)} for t in texts])
write("encode-sentencepiece-nonlegacy.jsonl", [{"text": t, "ids": hf_tokenize_nonlegacy(t)} for t in texts])

# tokenizer_image_token over the non-legacy slow tokenizer (add_bos_token: BOS 1 before every chunk, one kept).
with open(os.path.join(here, "prompts.jsonl"), encoding="utf-8") as f:
    prompts = [json.loads(line) for line in f if line.strip()]
rows = []
for p in prompts:
    if p["tokenizer"] != "sentencepiece":
        continue
    chunks = [[1] + hf_tokenize_nonlegacy(c) for c in p["prompt"].split("<image>")]
    ids = [chunks[0][0]]
    for i, c in enumerate(chunks):
        if i > 0:
            ids.append(-200)
        ids.extend(c[1:])
    rows.append({**p, "ids": ids})
write("prompts-nonlegacy.jsonl", rows)
print("sentencepiece", sentencepiece.__version__)
