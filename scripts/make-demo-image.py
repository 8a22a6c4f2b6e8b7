# Makes src/MoeCompiler.Cli/Assets/demo.png, the picture the `moe demo` command asks about.
# Run with Debian's Python: /usr/bin/python3 scripts/make-demo-image.py
from PIL import Image, ImageDraw

img = Image.new("RGB", (320, 240), (135, 190, 235))           # sky
d = ImageDraw.Draw(img)
d.rectangle([0, 170, 320, 240], fill=(70, 150, 60))             # grass
d.ellipse([240, 20, 290, 70], fill=(250, 210, 60))              # sun
d.rectangle([60, 110, 170, 185], fill=(180, 60, 50))            # house
d.polygon([(50, 112), (115, 60), (180, 112)], fill=(110, 60, 40))  # roof
d.rectangle([100, 140, 125, 185], fill=(90, 50, 30))            # door
d.ellipse([200, 120, 260, 180], fill=(40, 110, 40))             # tree crown
d.rectangle([225, 175, 235, 200], fill=(100, 70, 40))           # trunk
img.save("src/MoeCompiler.Cli/Assets/demo.png", optimize=True)
