#!/usr/bin/python3
"""Independent GGUF v3 reader: validates a file against the public specification (ggml docs/gguf.md) and prints
a JSON summary. Written from the specification, not from benchmarks/PeerBench's C# writer, so that the golden
file it makes (tests/PeerBench.Tests/TestData/tiny-gguf.json) checks the writer against an independent reading.

Checks: magic "GGUF", version 3; every metadata value parses with its declared type (u64-length UTF-8 strings,
typed arrays); tensor infos (u32 rank, u64 dims with ne[0] innermost, u32 type, u64 offset); offsets are multiples
of general.alignment (default 32) relative to the data section, which starts at the first aligned position after
the infos; tensors do not overlap; the file ends exactly after the last tensor's bytes (block sizes per type:
F32 4 bytes per value, BF16 2, Q8_0 34 per 32, Q4_0 18 per 32, Q4_K 144 per 256); every block's f16 scale(s) are
finite; Q8_0 codes are never -128.

usage: gguf_check.py FILE...      (prints one JSON object per file, keyed by its base name)
regenerate the golden (from the repository root, after building benchmarks/PeerBench):
  for t in bf16 q8_0 q4_0 q4_k; do benchmarks/PeerBench/peer.sh write-gguf --tiny --type $t --out /tmp/g/tiny-$t.gguf; done
  /usr/bin/python3 tests/reference/gguf_check.py /tmp/g/tiny-*.gguf > tests/PeerBench.Tests/TestData/tiny-gguf.json
"""
import hashlib
import json
import os
import struct
import sys

import numpy as np

VALUE_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
# ggml type id -> (name, values per block, bytes per block)
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 8: ("Q8_0", 32, 34), 12: ("Q4_K", 256, 144), 30: ("BF16", 1, 2)}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def scalar(self, fmt):
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.scalar("<Q")
        if self.pos + n > len(self.data):
            raise ValueError(f"string of {n} bytes past the end at {self.pos}")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, vtype):
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            etype = self.scalar("<I")
            n = self.scalar("<Q")
            return {"array_of": etype, "items": [self.value(etype) for _ in range(n)]}
        if vtype not in VALUE_FORMATS:
            raise ValueError(f"unknown metadata value type {vtype}")
        return self.scalar(VALUE_FORMATS[vtype])


def check(path):
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data)
    if data[:4] != b"GGUF":
        raise ValueError("bad magic")
    r.pos = 4
    version = r.scalar("<I")
    if version != 3:
        raise ValueError(f"version {version}, expected 3")
    n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
    metadata = {}
    for _ in range(n_kv):
        key = r.string()
        vtype = r.scalar("<I")
        if key in metadata:
            raise ValueError(f"duplicate key {key}")
        metadata[key] = (vtype, r.value(vtype))
    alignment = metadata.get("general.alignment", (4, 32))[1]
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        rank = r.scalar("<I")
        dims = [r.scalar("<Q") for _ in range(rank)]
        ttype = r.scalar("<I")
        offset = r.scalar("<Q")
        infos.append((name, dims, ttype, offset))
    data_start = (r.pos + alignment - 1) // alignment * alignment
    end = 0
    tensors = {}
    for name, dims, ttype, offset in sorted(infos, key=lambda t: t[3]):
        if ttype not in TYPES:
            raise ValueError(f"{name}: unknown type {ttype}")
        tname, per_block, block_bytes = TYPES[ttype]
        if offset % alignment:
            raise ValueError(f"{name}: offset {offset} not aligned to {alignment}")
        if offset < end:
            raise ValueError(f"{name}: overlaps the previous tensor")
        if dims[0] % per_block:
            raise ValueError(f"{name}: row of {dims[0]} values is not whole {tname} blocks")
        count = int(np.prod(dims))
        size = count // per_block * block_bytes
        begin = data_start + offset
        raw = np.frombuffer(data, dtype=np.uint8, count=size, offset=begin)
        if tname in ("Q8_0", "Q4_0", "Q4_K"):
            blocks = raw.reshape(-1, block_bytes)
            scale_bytes = 4 if tname == "Q4_K" else 2
            scales = blocks[:, :scale_bytes].copy().view(np.float16).astype(np.float32)
            if not np.all(np.isfinite(scales)):
                raise ValueError(f"{name}: non-finite block scale")
            if tname == "Q8_0" and np.any(blocks[:, 2:].view(np.int8) == -128):
                raise ValueError(f"{name}: Q8_0 code -128")
            first = dequantize_first_block(tname, blocks[0])
        elif tname == "BF16":
            first = (raw[:2 * min(count, 8)].view(np.uint16).astype(np.uint32) << 16).view(np.float32).tolist()
        else:
            first = raw[:4 * min(count, 8)].view(np.float32).tolist()
        tensors[name] = {"dims": dims, "type": tname, "offset": offset, "bytes": size,
                         "first_values": [round(float(v), 6) for v in first[:8]]}
        end = offset + size
    if data_start + end != len(data):
        raise ValueError(f"file is {len(data)} bytes, the last tensor ends at {data_start + end}")
    summary_metadata = {}
    for key, (vtype, value) in metadata.items():
        if vtype == ARRAY:
            items = value["items"]
            summary_metadata[key] = {"array_of": value["array_of"], "count": len(items), "first": items[:3],
                                     "sha256": hashlib.sha256(json.dumps(items).encode()).hexdigest()}
        else:
            summary_metadata[key] = {"type": vtype, "value": round(value, 9) if isinstance(value, float) else value}
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "version": version,
            "alignment": alignment, "data_start": data_start, "metadata": summary_metadata, "tensors": tensors}


def dequantize_first_block(tname, block):
    """The first block's values, from the block layouts in ggml's docs and headers."""
    if tname == "Q8_0":
        d = block[:2].copy().view(np.float16)[0].astype(np.float32)
        return (block[2:].view(np.int8).astype(np.float32) * d).tolist()
    if tname == "Q4_0":
        d = block[:2].copy().view(np.float16)[0].astype(np.float32)
        q = block[2:18]
        codes = np.concatenate([q & 15, q >> 4]).astype(np.float32) - 8  # low nibbles: values 0..15, high: 16..31
        return (codes * d).tolist()
    # Q4_K: d, dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles; sub-block 0 = low nibbles of bytes 0..31
    d, dmin = block[:4].copy().view(np.float16).astype(np.float32)
    s = block[4:16]
    scale0, min0 = s[0] & 63, s[4] & 63
    q = block[16:48] & 15
    return (d * scale0 * q.astype(np.float32) - dmin * min0).tolist()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    out = {}
    for p in sys.argv[1:]:
        try:
            out[os.path.basename(p)] = check(p)
        except (ValueError, struct.error, UnicodeDecodeError) as e:
            raise SystemExit(f"{p}: {e}")
    print(json.dumps(out, indent=1, sort_keys=True))
