#!/usr/bin/python3
"""Writes the test pictures for ImageSharpCompare and Pillow's decode of each (raw RGB, the reference), and times
Pillow's decode. Run with Debian's /usr/bin/python3 (python3-pil).

    /usr/bin/python3 make_images.py OUT_DIR [RUNS]

Per picture NAME: NAME.png|jpg, NAME.pillow.rgb (Image.open(...).convert("RGB").tobytes()) and a line
"NAME median_ms min_ms" in pillow-times.txt (open + load + convert, file bytes already in memory).
"""
import io
import os
import sys
import time

from PIL import Image, ImageFilter

out = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
os.makedirs(out, exist_ok=True)

# A photo-like 2048x1536 picture: fractal detail, smooth gradients and sensor-like noise, so that JPEG's
# quantisation, chroma subsampling and the decoders' IDCT and upsampling all matter.
W, H = 2048, 1536
r = Image.effect_mandelbrot((W, H), (-2.2, -1.2, 1.0, 1.2), 120)
g = Image.linear_gradient("L").resize((W, H)).rotate(90)
b = Image.radial_gradient("L").resize((W, H))
noise = Image.effect_noise((W, H), 24)
photo = Image.merge("RGB", (Image.blend(r, noise, 0.3), Image.blend(g, noise, 0.2), Image.blend(b, r, 0.4)))
photo = photo.filter(ImageFilter.GaussianBlur(0.6))

pictures = {
    "png-rgb": (photo, dict(format="PNG")),
    "png-rgba": (photo.convert("RGBA"), dict(format="PNG")),  # alpha all 255: conversion must just drop it
    "png-gray": (photo.convert("L"), dict(format="PNG")),
    "png-palette": (photo.convert("P", palette=Image.ADAPTIVE, colors=200), dict(format="PNG")),
    "jpeg-baseline-420": (photo, dict(format="JPEG", quality=90, subsampling="4:2:0")),
    "jpeg-baseline-444": (photo, dict(format="JPEG", quality=95, subsampling="4:4:4")),
    "jpeg-progressive-420": (photo, dict(format="JPEG", quality=90, subsampling="4:2:0", progressive=True)),
    "jpeg-gray": (photo.convert("L"), dict(format="JPEG", quality=90)),
}

with open(os.path.join(out, "pillow-times.txt"), "w") as times:
    for name, (image, save_args) in pictures.items():
        ext = "png" if save_args["format"] == "PNG" else "jpg"
        path = os.path.join(out, f"{name}.{ext}")
        image.save(path, **save_args)
        data = open(path, "rb").read()
        decoded = Image.open(io.BytesIO(data)).convert("RGB")
        open(os.path.join(out, f"{name}.pillow.rgb"), "wb").write(decoded.tobytes())
        samples = []
        for _ in range(runs + 1):  # the first run warms caches and is dropped
            start = time.perf_counter()
            Image.open(io.BytesIO(data)).convert("RGB").load()
            samples.append((time.perf_counter() - start) * 1000)
        samples = sorted(samples[1:])
        times.write(f"{name} {samples[len(samples) // 2]:.2f} {samples[0]:.2f}\n")
        print(f"{name}: {len(data) // 1024} KiB, Pillow decode median {samples[len(samples) // 2]:.1f} ms")
