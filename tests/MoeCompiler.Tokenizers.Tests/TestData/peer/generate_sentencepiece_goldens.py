"""Encodes the texts of encode-sentencepiece.jsonl with the real SentencePiece library and the shipped
tokenizer.model (mistral-sentencepiece.model), writing encode-sentencepiece-model.jsonl.

Rerun with Debian's python3-sentencepiece, after generate_goldens.mjs:
    /usr/bin/python3 tests/MoeCompiler.Tokenizers.Tests/TestData/peer/generate_sentencepiece_goldens.py
SentencePiece never matches control symbols such as "<s>" in text, so these ids correspond to encoding with
special tokens disabled. Tests only read the committed output."""
import json
import os

import sentencepiece

here = os.path.dirname(os.path.abspath(__file__))
model = os.path.join(here, "../../../../src/MoeCompiler.Tokenizers/Data/mistral-sentencepiece.model")
sp = sentencepiece.SentencePieceProcessor(model_file=model)

with open(os.path.join(here, "encode-sentencepiece.jsonl"), encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f if line.strip()]

with open(os.path.join(here, "encode-sentencepiece-model.jsonl"), "w", encoding="utf-8") as out:
    for text in texts:
        out.write(json.dumps({"text": text, "ids": sp.encode(text)}, ensure_ascii=False, separators=(",", ":")) + "\n")
print(f"encode-sentencepiece-model.jsonl: {len(texts)} rows (sentencepiece {sentencepiece.__version__})")
