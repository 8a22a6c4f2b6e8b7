"""Goldens for transformers' slow LlamaTokenizer (what MoE-LLaVA and CuMo load: use_fast=False) in both SentencePiece
modes, on texts where a special token (<s>, </s>, <unk>) is followed by text, spaces, newlines or punctuation: the
one place where legacy=True and legacy=False differ.

transformers is not installed here, so the tokenization logic of transformers 4.37 is written out below and runs over
the real SentencePiece library (Debian python3-sentencepiece) with the shipped tokenizer.model
(src/MoeCompiler.Tokenizers/Data/mistral-sentencepiece.model):

- PreTrainedTokenizer.tokenize: the text is split at added tokens (the special tokens <unk>, <s>, </s>; Llama's
  AddedTokens have lstrip = rstrip = single_word = False, so nothing around them is stripped), empty pieces are
  dropped, special tokens are kept as they are and every other piece goes to _tokenize.
- legacy=True: LlamaTokenizer.tokenize is the base one and _tokenize is sp_model.encode(piece) with the model as
  trained, i.e. with add_dummy_prefix: every piece between special tokens gets its own "▁".
- legacy=False: get_spm_processor loads the model with normalizer_spec.add_dummy_prefix = False; tokenize encodes
  "▁" + text.replace("▁", " ") and drops a lone leading "▁" piece when a special token follows it; _tokenize encodes a
  piece that starts with "▁" or " " as unk_token + piece and removes the unk pieces (unk_token_length), and any other
  piece as it is.
- The ids are sp.piece_to_id of the tokens (special tokens included), with no BOS (add_special_tokens=False).

Rerun with Debian's python (apt-get install python3-sentencepiece):
    /usr/bin/python3 tests/MoeCompiler.Tokenizers.Tests/TestData/peer/generate_slow_llama_legacy_goldens.py
It writes slow-llama-legacy.jsonl next to itself; tests only read that file."""
import json
import os

import sentencepiece

here = os.path.dirname(os.path.abspath(__file__))
model_path = os.path.join(here, "../../../../src/MoeCompiler.Tokenizers/Data/mistral-sentencepiece.model")
model_bytes = open(model_path, "rb").read()


# ---- minimal protobuf rewrite: ModelProto.normalizer_spec (field 3) .add_dummy_prefix (its field 3) = false ----
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


sp_legacy = sentencepiece.SentencePieceProcessor(model_proto=model_bytes)
sp_plain = sentencepiece.SentencePieceProcessor(model_proto=without_dummy_prefix(model_bytes))
assert sp_legacy.encode("a", out_type=str) != sp_plain.encode("a", out_type=str)

UNDERLINE = "\u2581"
UNK = "<unk>"
SPECIALS = [UNK, "<s>", "</s>"]
UNK_LENGTH = len(sp_plain.encode(UNK, out_type=str))


def split_on_specials(text):
    """tokens_trie.split: the leftmost match, the longest one at that position."""
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


def base_tokenize(text, tokenize_piece):
    tokens = []
    for part in split_on_specials(text):
        if not part:
            continue
        tokens.extend([part] if part in SPECIALS else tokenize_piece(part))
    return tokens


def legacy_tokenize(text):
    return base_tokenize(text, lambda piece: sp_legacy.encode(piece, out_type=str))


def nonlegacy_piece(piece):
    if not piece.startswith((UNDERLINE, " ")):
        return sp_plain.encode(piece, out_type=str)
    tokens = sp_plain.encode(UNK + piece, out_type=str)
    return tokens[UNK_LENGTH:] if len(tokens) >= UNK_LENGTH else tokens


def nonlegacy_tokenize(text):
    if not text:
        return []
    tokens = base_tokenize(UNDERLINE + text.replace(UNDERLINE, " "), nonlegacy_piece)
    if len(tokens) > 1 and tokens[0] == UNDERLINE and tokens[1] in SPECIALS:
        tokens = tokens[1:]
    return tokens


def ids(tokens):
    return [sp_legacy.piece_to_id(t) for t in tokens]


TEXTS = [
    "<s>[INST] hello [/INST]",
    "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nDescribe the image. [/INST]",
    " It is a cat. </s>[INST] And the dog? [/INST]",
    "<s>Hello",
    "<s> Hello",
    "<s>  Hello",
    "<s>\nHello",
    "<s>\n\nHello",
    "<s>\tHello",
    "<s>.",
    "<s>. Hello",
    "<s>,comma",
    "<s>!?",
    "<s>(paren)",
    "<s>'quote'",
    "<s>\"double\"",
    "<s>123",
    "<s>\u4f60\u597d",
    "<s>\u00e9t\u00e9",
    "<s>\U0001f999 llama",
    "</s>Hello",
    "</s> Hello",
    "</s>\nHello",
    "</s>.",
    "Hello</s>",
    "Hello </s>",
    "Hello </s> world",
    "Hello</s>world",
    "Hello <s>.",
    "a<s>b</s>c",
    "<s></s>",
    "<s> </s>",
    "<s>",
    "</s>",
    " <s>",
    "  <s> x",
    "\n<s>x",
    "<unk>x",
    "x <unk> y",
    "<s><s>[INST]",
    "\u2581<s>\u2581x",
    "line one\nline two</s>\n\nnext",
    "[INST] What is in the picture? [/INST] A red bus. </s><s>[INST] Where? [/INST]",
    " leading space",
    "\nleading newline",
    ".leading punctuation",
    "   three spaces",
    "",
]


def main():
    out_path = os.path.join(here, "slow-llama-legacy.jsonl")
    with open(out_path, "w", encoding="utf-8") as out:
        for text in TEXTS:
            row = {"text": text, "legacy": ids(legacy_tokenize(text)), "nonlegacy": ids(nonlegacy_tokenize(text))}
            out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    differing = sum(legacy_tokenize(t) != nonlegacy_tokenize(t) for t in TEXTS)
    print(f"slow-llama-legacy.jsonl: {len(TEXTS)} rows, {differing} differ between the modes; sentencepiece {sentencepiece.__version__}")


main()
