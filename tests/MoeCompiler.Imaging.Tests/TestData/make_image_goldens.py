#!/usr/bin/python3
"""Generates the imaging test images and their golden decodes / preprocessed tensors.

Run with Debian's /usr/bin/python3 (Pillow 9.4, numpy) and libjpeg-turbo-progs (cjpeg/djpeg 2.1.5) from this
directory: `/usr/bin/python3 make_image_goldens.py`. Everything written is deterministic (seeded).

Goldens:
  * lossless formats: Pillow's Image.open(f).convert("RGB") pixels, raw RGB (exact match expected);
  * JPEG: djpeg's default decode (islow IDCT, fancy upsampling) to PPM, EXIF orientation applied the way
    ImageOps.exif_transpose does; asserted here to equal Pillow's decode (same libjpeg-turbo); CMYK JPEGs use
    Pillow only (djpeg cannot write CMYK as PPM). C# must be within 1 level;
  * resize: Pillow Image.resize(size, Image.BICUBIC) (exact);
  * preprocessing: the LLaVA expand2square + CLIPImageProcessor / SiglipImageProcessor steps written out with
    Pillow + numpy (transformers is not installed here), float32 CHW (C# within 1e-6).
manifest.json lists every case.
"""
import hashlib, io, json, os, struct, subprocess, zlib
import numpy as np
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
IMG = os.path.join(HERE, "images")
GOLD = os.path.join(HERE, "goldens")
os.makedirs(IMG, exist_ok=True)
os.makedirs(GOLD, exist_ok=True)
rng = np.random.default_rng(20261122)
manifest = {"decode": [], "resize": [], "preprocess": []}


def scene(w, h, noise=12):
    """A photo-like synthetic picture: gradients, a disc, stripes and mild noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / max(w, 1) * 6.0) * np.cos(y / max(h, 1) * 3.0)
    g = 255 * x / max(w - 1, 1)
    b = 255 * y / max(h - 1, 1)
    disc = (x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(w, h) * 0.25) ** 2
    r[disc], g[disc], b[disc] = 230, 40, 60
    stripes = ((x // 3) % 2 == 0) & (y > h * 0.75)
    g[stripes] = 20
    a = np.stack([r, g, b], -1) + rng.normal(0, noise, (h, w, 3))
    return np.clip(a, 0, 255).round().astype(np.uint8)


def save_golden(name, rgb):
    path = os.path.join(GOLD, name + ".rgb")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(rgb.tobytes())
    return "goldens/" + name + ".rgb"


def pillow_rgb(path, transpose=False):
    im = Image.open(path)
    if transpose:
        im = ImageOps.exif_transpose(im)
    return np.array(im.convert("RGB"))


def add_exact(name, filename, note):
    rgb = pillow_rgb(os.path.join(IMG, filename))
    manifest["decode"].append({"name": name, "file": "images/" + filename, "width": rgb.shape[1], "height": rgb.shape[0],
                               "golden": save_golden(name, rgb), "tolerance": 0, "note": note})


def djpeg_rgb(path):
    out = subprocess.run(["djpeg", "-ppm", path], check=True, capture_output=True).stdout
    return np.array(Image.open(io.BytesIO(out)).convert("RGB"))


EXIF_TRANSPOSE = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
                  5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 1)[::-1, :][:, ::-1][::-1],
                  8: lambda a: np.rot90(a, 1)}


def add_jpeg(name, filename, note, orientation=1, djpeg=True):
    path = os.path.join(IMG, filename)
    pil = pillow_rgb(path, transpose=True)
    if djpeg:
        ref = djpeg_rgb(path)
        if orientation != 1:
            ref = np.ascontiguousarray(EXIF_TRANSPOSE[orientation](ref))
        assert ref.shape == pil.shape and np.array_equal(ref, pil), f"{name}: djpeg and Pillow disagree"
    else:
        ref = pil
    manifest["decode"].append({"name": name, "file": "images/" + filename, "width": ref.shape[1], "height": ref.shape[0],
                               "golden": save_golden(name, ref), "tolerance": 1, "note": note})


def cjpeg(src_rgb, filename, *args):
    ppm = os.path.join(IMG, "_tmp.ppm")
    Image.fromarray(src_rgb).save(ppm)
    subprocess.run(["cjpeg", *args, "-outfile", os.path.join(IMG, filename), ppm], check=True)
    os.remove(ppm)


# ---------------------------------------------------------------- JPEG
base = scene(37, 29)
for sub, label in [(0, "444"), (1, "422"), (2, "420")]:
    fn = f"jpeg_{label}_37x29.jpg"
    Image.fromarray(base).save(os.path.join(IMG, fn), quality=90, subsampling=sub)
    add_jpeg(f"jpeg_{label}", fn, f"baseline 4:{label[1]}:{label[2]} odd size")
cjpeg(base, "jpeg_440_37x29.jpg", "-quality", "90", "-sample", "1x2,1x1,1x1")
add_jpeg("jpeg_440", "jpeg_440_37x29.jpg", "baseline 4:4:0 (h1v2 fancy upsampling)")
cjpeg(base, "jpeg_411_37x29.jpg", "-quality", "90", "-sample", "4x1,1x1,1x1")
add_jpeg("jpeg_411", "jpeg_411_37x29.jpg", "baseline 4:1:1 (box upsampling)")
cjpeg(base, "jpeg_h2v2luma_only.jpg", "-quality", "85", "-sample", "2x2,2x1,1x2")
add_jpeg("jpeg_mixed_sampling", "jpeg_h2v2luma_only.jpg", "luma 2x2, Cb 2x1, Cr 1x2")
big = scene(61, 47)
Image.fromarray(big).save(os.path.join(IMG, "jpeg_prog_420_61x47.jpg"), quality=85, subsampling=2, progressive=True)
add_jpeg("jpeg_progressive_420", "jpeg_prog_420_61x47.jpg", "progressive 4:2:0")
Image.fromarray(big).save(os.path.join(IMG, "jpeg_prog_444_61x47.jpg"), quality=95, subsampling=0, progressive=True)
add_jpeg("jpeg_progressive_444", "jpeg_prog_444_61x47.jpg", "progressive 4:4:4 (successive approximation)")
cjpeg(big, "jpeg_restart_rows.jpg", "-quality", "80", "-restart", "1")
add_jpeg("jpeg_restart_rows", "jpeg_restart_rows.jpg", "baseline 4:2:0 restart every MCU row")
cjpeg(big, "jpeg_restart_blocks_prog.jpg", "-quality", "80", "-progressive", "-restart", "3B")
add_jpeg("jpeg_restart_progressive", "jpeg_restart_blocks_prog.jpg", "progressive with restart every 3 MCUs")
cjpeg(big, "jpeg_optimized.jpg", "-quality", "70", "-optimize")
add_jpeg("jpeg_optimized", "jpeg_optimized.jpg", "optimised Huffman tables")
cjpeg(big, "jpeg_rgb.jpg", "-quality", "90", "-rgb")
add_jpeg("jpeg_rgb", "jpeg_rgb.jpg", "RGB colour space (Adobe transform 0)")
gray = np.array(Image.fromarray(big).convert("L"))
Image.fromarray(gray).save(os.path.join(IMG, "jpeg_gray.jpg"), quality=90)
add_jpeg("jpeg_gray", "jpeg_gray.jpg", "grayscale baseline")
Image.fromarray(gray).save(os.path.join(IMG, "jpeg_gray_prog.jpg"), quality=90, progressive=True)
add_jpeg("jpeg_gray_progressive", "jpeg_gray_prog.jpg", "grayscale progressive")
cmyk = Image.fromarray(big).convert("CMYK")
cmyk.save(os.path.join(IMG, "jpeg_cmyk.jpg"), quality=90)
add_jpeg("jpeg_cmyk", "jpeg_cmyk.jpg", "CMYK with Adobe marker (Pillow golden)", djpeg=False)
for w, h in [(1, 1), (2, 2), (3, 5), (17, 1)]:
    fn = f"jpeg_420_{w}x{h}.jpg"
    Image.fromarray(scene(w, h)).save(os.path.join(IMG, fn), quality=90, subsampling=2)
    add_jpeg(f"jpeg_tiny_{w}x{h}", fn, "tiny 4:2:0 (box upsampling when the chroma width is <= 2)")
Image.fromarray(scene(513, 3)).save(os.path.join(IMG, "jpeg_wide_513x3.jpg"), quality=90, subsampling=2)
add_jpeg("jpeg_wide", "jpeg_wide_513x3.jpg", "very wide 4:2:0")
Image.fromarray(scene(3, 300)).save(os.path.join(IMG, "jpeg_tall_3x300.jpg"), quality=90, subsampling=1)
add_jpeg("jpeg_tall", "jpeg_tall_3x300.jpg", "very tall 4:2:2")
photo = scene(200, 150, noise=6)
Image.fromarray(photo).save(os.path.join(IMG, "photo_200x150.jpg"), quality=88, subsampling=2)
add_jpeg("photo", "photo_200x150.jpg", "the preprocessing input")
exif_base = scene(23, 15)
for o in range(1, 9):
    ex = Image.Exif()
    ex[0x0112] = o
    fn = f"jpeg_exif_{o}.jpg"
    Image.fromarray(exif_base).save(os.path.join(IMG, fn), quality=90, subsampling=2, exif=ex.tobytes())
    add_jpeg(f"jpeg_exif_orientation_{o}", fn, f"EXIF orientation {o}", orientation=o)


# ---------------------------------------------------------------- PNG (own writer: interlace + every filter)
def png_chunk(t, body):
    return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body) & 0xFFFFFFFF)


def pack_rows(samples, depth):
    """samples: uint array [h, w*channels]; returns packed rows (bytes per row)."""
    h = samples.shape[0]
    if depth == 16:
        return [samples[y].astype(">u2").tobytes() for y in range(h)]
    if depth == 8:
        return [samples[y].astype(np.uint8).tobytes() for y in range(h)]
    per = 8 // depth
    rows = []
    for y in range(h):
        row = samples[y]
        pad = (-len(row)) % per
        row = np.concatenate([row, np.zeros(pad, dtype=row.dtype)]).reshape(-1, per)
        vals = np.zeros(row.shape[0], dtype=np.int64)
        for i in range(per):
            vals = (vals << depth) | row[:, i]
        rows.append(vals.astype(np.uint8).tobytes())
    return rows


def filter_rows(rows, bpp):
    out, prev = b"", bytes(len(rows[0])) if rows else b""
    for y, row in enumerate(rows):
        ft = (y * 7 + 3) % 5
        cur = bytearray(row)
        res = bytearray(len(row))
        for i in range(len(row)):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ft == 0: p = 0
            elif ft == 1: p = a
            elif ft == 2: p = b
            elif ft == 3: p = (a + b) >> 1
            else:
                pp = a + b - c; pa, pb, pc = abs(pp - a), abs(pp - b), abs(pp - c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            res[i] = (cur[i] - p) & 0xFF
        out += bytes([ft]) + bytes(res)
        prev = bytes(cur)
    return out


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(filename, samples, w, h, channels, depth, color_type, interlace=False, plte=None, trns=None):
    bpp = max(1, channels * depth // 8)
    img = samples.reshape(h, w, channels)
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = img[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            raw += filter_rows(pack_rows(sub.reshape(sub.shape[0], -1), depth), bpp)
    else:
        raw = filter_rows(pack_rows(img.reshape(h, -1), depth), bpp)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace)))
    data += png_chunk(b"tEXt", b"Comment\x00synthetic")
    if plte is not None:
        data += png_chunk(b"PLTE", bytes(plte))
    if trns is not None:
        data += png_chunk(b"tRNS", trns)
    z = zlib.compress(raw, 9)
    half = len(z) // 2
    data += png_chunk(b"IDAT", z[:half]) + png_chunk(b"IDAT", z[half:]) + png_chunk(b"IEND", b"")
    with open(os.path.join(IMG, filename), "wb") as f:
        f.write(data)


pw, ph = 19, 13
for interlace in (False, True):
    tag = "_adam7" if interlace else ""
    for depth in (1, 2, 4, 8, 16):
        s = rng.integers(0, 1 << depth, (ph, pw), dtype=np.int64)
        if depth == 16:
            s[0, :6] = [0, 100, 255, 256, 1000, 65535]
        fn = f"png_gray{depth}{tag}.png"
        write_png(fn, s, pw, ph, 1, depth, 0, interlace, trns=struct.pack(">H", 1) if depth == 8 else None)
        add_exact(f"png_gray{depth}{tag}", fn, f"grey {depth}-bit" + (" Adam7" if interlace else ""))
    for depth in (8, 16):
        s = rng.integers(0, 1 << depth, (ph, pw * 3), dtype=np.int64)
        fn = f"png_rgb{depth}{tag}.png"
        write_png(fn, s, pw, ph, 3, depth, 2, interlace)
        add_exact(f"png_rgb{depth}{tag}", fn, f"RGB {depth}-bit")
        s = rng.integers(0, 1 << depth, (ph, pw * 4), dtype=np.int64)
        fn = f"png_rgba{depth}{tag}.png"
        write_png(fn, s, pw, ph, 4, depth, 6, interlace)
        add_exact(f"png_rgba{depth}{tag}", fn, f"RGBA {depth}-bit (alpha dropped)")
        s = rng.integers(0, 1 << depth, (ph, pw * 2), dtype=np.int64)
        fn = f"png_gray_alpha{depth}{tag}.png"
        write_png(fn, s, pw, ph, 2, depth, 4, interlace)
        add_exact(f"png_gray_alpha{depth}{tag}", fn, f"grey+alpha {depth}-bit")
    for depth in (1, 2, 4, 8):
        n = 1 << depth if depth < 8 else 200
        s = rng.integers(0, n, (ph, pw), dtype=np.int64)
        pal = rng.integers(0, 256, n * 3).tolist()
        trns = bytes(rng.integers(0, 256, min(n, 5)).tolist())
        fn = f"png_palette{depth}{tag}.png"
        write_png(fn, s, pw, ph, 1, depth, 3, interlace, plte=pal, trns=trns)
        add_exact(f"png_palette{depth}{tag}", fn, f"palette {depth}-bit with tRNS")
write_png("png_1x1.png", np.array([[7, 200, 33]]), 1, 1, 3, 8, 2, True)
add_exact("png_1x1_adam7", "png_1x1.png", "1x1 interlaced")
Image.fromarray(scene(300, 2)).save(os.path.join(IMG, "png_wide_pillow.png"))
add_exact("png_wide_pillow", "png_wide_pillow.png", "very wide, written by Pillow")

# ---------------------------------------------------------------- BMP
bm = scene(13, 7)
Image.fromarray(bm).save(os.path.join(IMG, "bmp_24.bmp"))
add_exact("bmp_24", "bmp_24.bmp", "24-bit bottom-up (Pillow)")
Image.fromarray(bm).quantize(37).save(os.path.join(IMG, "bmp_8.bmp"))
add_exact("bmp_8", "bmp_8.bmp", "8-bit palette (Pillow)")
Image.fromarray(bm).convert("1").save(os.path.join(IMG, "bmp_1.bmp"))
add_exact("bmp_1", "bmp_1.bmp", "1-bit (Pillow)")


def write_bmp32(filename, rgb, top_down, bitfields):
    h, w = rgb.shape[:2]
    rows = []
    order = range(h) if top_down else range(h - 1, -1, -1)
    for y in order:
        px = np.concatenate([rgb[y, :, ::-1], np.full((w, 1), 77, np.uint8)], 1)  # BGRX, X junk
        rows.append(px.tobytes())
    pixels = b"".join(rows)
    extra = struct.pack("<III", 0xFF0000, 0xFF00, 0xFF) if bitfields else b""
    offset = 14 + 40 + len(extra)
    info = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, 32, 3 if bitfields else 0, len(pixels), 2835, 2835, 0, 0)
    with open(os.path.join(IMG, filename), "wb") as f:
        f.write(b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + extra + pixels)


write_bmp32("bmp_32_topdown.bmp", bm, True, False)
add_exact("bmp_32_topdown", "bmp_32_topdown.bmp", "32-bit BGRX top-down")
write_bmp32("bmp_32_bitfields.bmp", bm, False, True)
add_exact("bmp_32_bitfields", "bmp_32_bitfields.bmp", "32-bit BI_BITFIELDS bottom-up")

# ---------------------------------------------------------------- PPM / PGM
pm = scene(11, 6)
Image.fromarray(pm).save(os.path.join(IMG, "ppm_p6.ppm"))
add_exact("ppm_p6", "ppm_p6.ppm", "P6 maxval 255")
Image.fromarray(pm).convert("L").save(os.path.join(IMG, "pgm_p5.pgm"))
add_exact("pgm_p5", "pgm_p5.pgm", "P5 maxval 255")
with open(os.path.join(IMG, "ppm_p3_plain.ppm"), "w") as f:
    f.write("P3\n# plain with comments\n11 6\n# maxval next\n1000\n")
    vals = (pm.astype(np.int64) * 1000 // 255).reshape(-1)
    f.write("\n".join(" ".join(str(v) for v in vals[i:i + 9]) for i in range(0, len(vals), 9)) + "\n")
add_exact("ppm_p3_plain", "ppm_p3_plain.ppm", "P3 maxval 1000, comments")
with open(os.path.join(IMG, "pgm_p2_plain.pgm"), "w") as f:
    f.write("P2 11 6 15\n" + " ".join(str(v) for v in (pm[..., 0] // 17).reshape(-1)) + "\n")
add_exact("pgm_p2_plain", "pgm_p2_plain.pgm", "P2 maxval 15")
with open(os.path.join(IMG, "ppm_p6_16bit.ppm"), "wb") as f:
    f.write(b"P6\n11 6\n40000\n" + (pm.astype(np.int64) * 40000 // 255 + rng.integers(0, 100, pm.shape)).clip(0, 40000).astype(">u2").tobytes())
add_exact("ppm_p6_16bit", "ppm_p6_16bit.ppm", "P6 maxval 40000 (16-bit samples)")
with open(os.path.join(IMG, "pgm_p5_16bit.pgm"), "wb") as f:
    f.write(b"P5 11 6 65535\n" + rng.integers(0, 600, (6, 11)).astype(">u2").tobytes())
add_exact("pgm_p5_16bit", "pgm_p5_16bit.pgm", "P5 maxval 65535 (Pillow mode I, clipped to 255)")
with open(os.path.join(IMG, "pgm_p5_maxval_7.pgm"), "wb") as f:
    f.write(b"P5 11 6 7\n" + rng.integers(0, 8, (6, 11)).astype(np.uint8).tobytes())
add_exact("pgm_p5_maxval_7", "pgm_p5_maxval_7.pgm", "P5 maxval 7 (rescaled with round half even)")

# A JPEG named .png: the format must come from the bytes.
with open(os.path.join(IMG, "photo_200x150.jpg"), "rb") as src, open(os.path.join(IMG, "really_a_jpeg.png"), "wb") as dst:
    dst.write(src.read())

# ---------------------------------------------------------------- resize and preprocessing
photo_rgb = djpeg_rgb(os.path.join(IMG, "photo_200x150.jpg"))
small = scene(23, 15)
np.save  # keep numpy import explicit
with open(os.path.join(GOLD, "resize_small_23x15.rgb"), "wb") as f:
    f.write(small.tobytes())
for src_name, src, size in [("photo", photo_rgb, (37, 53)), ("photo", photo_rgb, (77, 150)), ("photo", photo_rgb, (200, 41)),
                            ("photo", photo_rgb, (3, 2)), ("small", small, (61, 47)), ("small", small, (336, 20)),
                            ("photo", photo_rgb, (201, 151))]:
    out = np.array(Image.fromarray(src).resize(size, Image.BICUBIC))
    name = f"resize_{src_name}_{size[0]}x{size[1]}"
    manifest["resize"].append({"name": name, "source": src_name, "width": size[0], "height": size[1], "golden": save_golden(name, out)})

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
SIGLIP_MEAN = SIGLIP_STD = [0.5, 0.5, 0.5]


def expand2square(im, background):
    w, h = im.size
    if w == h:
        return im
    if w > h:
        result = Image.new(im.mode, (w, w), background)
        result.paste(im, (0, (w - h) // 2))
    else:
        result = Image.new(im.mode, (h, h), background)
        result.paste(im, ((h - w) // 2, 0))
    return result


def pipeline(rgb, tower, size, pad):
    mean, std = (CLIP_MEAN, CLIP_STD) if tower == "clip" else (SIGLIP_MEAN, SIGLIP_STD)
    im = Image.fromarray(rgb)
    if pad:
        im = expand2square(im, tuple(int(x * 255) for x in mean))
    if tower == "clip":  # CLIPImageProcessor: shortest_edge resize then center_crop
        w, h = im.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        im = im.resize((new_short, new_long) if w <= h else (new_long, new_short), Image.BICUBIC)
        arr = np.array(im)
        top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
        arr = arr[top:top + size, left:left + size]
    else:  # SiglipImageProcessor: resize to size x size
        arr = np.array(im.resize((size, size), Image.BICUBIC))
    prepared = arr
    x = (arr.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return prepared, np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


for src_name, src in [("photo", photo_rgb), ("small", small), ("tall", np.ascontiguousarray(photo_rgb[:, :40]))]:
    for tower, size, pad in [("clip", 32, True), ("siglip", 40, True), ("clip", 24, False), ("siglip", 16, False),
                             ("clip", 336, True), ("siglip", 384, True)]:
        prepared, tensor = pipeline(src, tower, size, pad)
        name = f"pre_{src_name}_{tower}{size}_{'pad' if pad else 'nopad'}"
        entry = {"name": name, "source": src_name, "tower": tower, "size": size, "pad": pad,
                 "prepared_sha256": hashlib.sha256(prepared.tobytes()).hexdigest(),
                 "tensor_sha256": hashlib.sha256(tensor.tobytes()).hexdigest(),
                 "tensor_samples": [[int(i), float(tensor.reshape(-1)[i])] for i in rng.integers(0, tensor.size, 16)]}
        if size <= 40:  # full tensors only for small sizes (committed data stays small)
            path = os.path.join(GOLD, name + ".f32")
            tensor.tofile(path)
            entry["tensor"] = "goldens/" + name + ".f32"
        manifest["preprocess"].append(entry)

# ---------------------------------------------------------------- JPEG cases needing a scan script or own encoder
scan_script = os.path.join(IMG, "_scans.txt")
with open(scan_script, "w") as f:
    f.write("0;\n1;\n2;\n")
cjpeg(big, "jpeg_sequential_multiscan.jpg", "-quality", "85", "-sample", "2x2,1x1,1x1", "-scans", scan_script)
os.remove(scan_script)
add_jpeg("jpeg_sequential_multiscan", "jpeg_sequential_multiscan.jpg", "sequential (baseline) 4:2:0, one scan per component")


def encode_jpeg_4(planes, adobe_transform):
    """A minimal baseline encoder (4 components, 1x1 sampling, one interleaved scan) for YCCK/CMYK test files.
    Huffman tables are fixed-length (DC 4-bit, AC 8-bit codes): valid canonical tables, simple to write."""
    h, w = planes[0].shape
    q = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                  14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                  49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8) // 2 + 1
    zz = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
          21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53,
          60, 61, 54, 47, 55, 62, 63]
    u = np.arange(8)
    C = np.cos((2 * u[None, :] + 1) * u[:, None] * np.pi / 16) / 2
    C[0] /= np.sqrt(2)
    dc_symbols = list(range(12))
    ac_symbols = [0x00, 0xF0] + [(r << 4) | s for r in range(16) for s in range(1, 11)]
    dc_code = {sym: (i, 4) for i, sym in enumerate(dc_symbols)}
    ac_code = {sym: (i, 8) for i, sym in enumerate(ac_symbols)}
    out, acc, nbits = bytearray(), 0, 0

    def put(value, n):
        nonlocal acc, nbits
        for bit in range(n - 1, -1, -1):
            acc = (acc << 1) | ((value >> bit) & 1)
            nbits += 1
            if nbits == 8:
                out.append(acc)
                if acc == 0xFF:
                    out.append(0)
                acc, nbits = 0, 0

    def magnitude(v):
        size = int(abs(int(v))).bit_length()
        return size, (int(v) if v > 0 else int(v) + (1 << size) - 1)

    ph, pw = (h + 7) // 8 * 8, (w + 7) // 8 * 8
    padded = [np.pad(p.astype(np.float64), ((0, ph - h), (0, pw - w)), mode="edge") for p in planes]
    pred = [0, 0, 0, 0]
    for by in range(ph // 8):
        for bx in range(pw // 8):
            for ci in range(4):
                block = padded[ci][by * 8:by * 8 + 8, bx * 8:bx * 8 + 8] - 128
                coef = np.round((C @ block @ C.T) / q).astype(int).reshape(-1)
                diff = coef[0] - pred[ci]
                pred[ci] = coef[0]
                size, bits = magnitude(diff)
                put(*dc_code[size])
                put(bits, size)
                run = 0
                last = max([k for k in range(1, 64) if coef[zz[k]] != 0], default=0)
                for k in range(1, last + 1):
                    v = coef[zz[k]]
                    if v == 0:
                        run += 1
                        continue
                    while run > 15:
                        put(*ac_code[0xF0])
                        run -= 16
                    size, bits = magnitude(v)
                    put(*ac_code[(run << 4) | size])
                    put(bits, size)
                    run = 0
                if last < 63:
                    put(*ac_code[0x00])
    if nbits:
        put((1 << (8 - nbits)) - 1, 8 - nbits)

    def segment(marker, body):
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    data = b"\xff\xd8" + segment(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, adobe_transform))
    data += segment(0xDB, bytes([0]) + bytes(int(q.reshape(-1)[z]) for z in zz))
    data += segment(0xC0, struct.pack(">BHHB", 8, h, w, 4) + b"".join(bytes([i + 1, 0x11, 0]) for i in range(4)))
    dc_counts = [0] * 16
    dc_counts[3] = len(dc_symbols)
    ac_counts = [0] * 16
    ac_counts[7] = len(ac_symbols)
    data += segment(0xC4, bytes([0x00] + dc_counts + dc_symbols) + bytes([0x10] + ac_counts + ac_symbols))
    data += segment(0xDA, bytes([4]) + b"".join(bytes([i + 1, 0x00]) for i in range(4)) + bytes([0, 63, 0]))
    return data + bytes(out) + b"\xff\xd9"


yk = scene(29, 21)
ycc = np.array(Image.fromarray(yk).convert("YCbCr"))
k_plane = (np.arange(29)[None, :] * 5 + np.arange(21)[:, None] * 3).astype(np.uint8)
with open(os.path.join(IMG, "jpeg_ycck.jpg"), "wb") as f:
    f.write(encode_jpeg_4([ycc[..., 0], ycc[..., 1], ycc[..., 2], k_plane], adobe_transform=2))
assert Image.open(os.path.join(IMG, "jpeg_ycck.jpg")).mode == "CMYK"
add_jpeg("jpeg_ycck", "jpeg_ycck.jpg", "YCCK (Adobe transform 2), own encoder (Pillow golden)", djpeg=False)
with open(os.path.join(IMG, "jpeg_cmyk_plain.jpg"), "wb") as f:
    f.write(encode_jpeg_4([yk[..., 0], yk[..., 1], yk[..., 2], k_plane], adobe_transform=0))
add_jpeg("jpeg_cmyk_own_encoder", "jpeg_cmyk_plain.jpg", "CMYK (Adobe transform 0), own encoder, 8-bit AC codes (Pillow golden)", djpeg=False)

with open(os.path.join(HERE, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
total = sum(os.path.getsize(os.path.join(d, n)) for d in (IMG, GOLD) for n in os.listdir(d))
print(f"{len(manifest['decode'])} decode, {len(manifest['resize'])} resize, {len(manifest['preprocess'])} preprocess cases; {total} bytes")
