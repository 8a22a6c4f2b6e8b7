"""Writes nfc.jsonl: seeded random strings rich in combining marks, precomposed letters, Hangul jamo and
syllables, compatibility ideographs and composition exclusions, with their NFC from Python's unicodedata.
Rerun: /usr/bin/python3 tests/MoeCompiler.Tokenizers.Tests/TestData/nfc/generate_nfc_goldens.py"""
import json
import os
import random
import unicodedata

pools = [
    "aeiouAEIOUcnsyz", "\u0300\u0301\u0302\u0303\u0308\u030a\u0323\u0327\u0328\u0345\u0316\u031b\u0360\u0334",
    "\u00e9\u00c5\u00f1\u1e9b\u01d5\u1ea5\u212b\u2126\u0344\u0958\u2adc", "\u1100\u1161\u11a8\u1112\u1175\u11c2\uac00\ud7a3",
    "\uf900\uf9ff\u2f800"[:3], "\u0915\u093c\u0928\u0942", "\u05d0\u05b7\u05bc", "\u0627\u0653\u0654\u0655",
    " xyz", "\u3042\u3099\u304b\u309a",
]
rng = random.Random(20261122)
rows = []
for _ in range(400):
    s = "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 12)))
    rows.append({"text": s, "nfc": unicodedata.normalize("NFC", s)})
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "nfc.jsonl"), "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
print(len(rows), "rows, unicode", unicodedata.unidata_version)
