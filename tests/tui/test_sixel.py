"""Sixel output as xterm needs it: every colour register defined before the first pixel,
and the picture itself unchanged (decoded back and compared pixel by pixel)."""

from __future__ import annotations

import re

import numpy as np
import textual_image.widget.sixel as sixel_widget
from aisci.tui.images import hoist_color_registers, install_sixel_register_fix
from PIL import Image
from textual_image._sixel import image_to_sixels


def decode(sixel: str) -> tuple[np.ndarray, dict[int, tuple[int, int, int]], int]:
    """A minimal sixel decoder: (register index per pixel, palette in percent, index of
    the first pixel character). Registers are resolved when a pixel is drawn, so a
    definition that arrives late changes nothing already painted (as in xterm)."""
    m = re.match(r'\x1bP[0-9;]*q"1;1;(\d+);(\d+)', sixel)
    assert m, "no raster attributes"
    width, height = int(m.group(1)), int(m.group(2))
    img = np.full((height + 6, width), -1, dtype=np.int32)
    palette: dict[int, tuple[int, int, int]] = {}
    x = band = color = 0
    first_pixel = -1
    i, body = m.end(), sixel
    end = body.index("\x1b\\", i)
    while i < end:
        ch = body[i]
        if ch == "#":
            d = re.match(r"#(\d+)(?:;2;(\d+);(\d+);(\d+))?", body[i:])
            color = int(d.group(1))
            if d.group(2) is not None:
                palette[color] = (int(d.group(2)), int(d.group(3)), int(d.group(4)))
            i += d.end()
            continue
        repeat = 1
        if ch == "!":
            d = re.match(r"!(\d+)", body[i:])
            repeat = int(d.group(1))
            i += d.end()
            ch = body[i]
        if ch == "$":
            x = 0
        elif ch == "-":
            x, band = 0, band + 1
        elif "?" <= ch <= "~":
            if first_pixel < 0:
                first_pixel = i
            bits = ord(ch) - 0x3F
            assert color in palette, f"register {color} used before it is defined"
            for _ in range(repeat):
                for r in range(6):
                    if bits >> r & 1:
                        img[band * 6 + r, x] = color
                x += 1
        i += 1
    return img[:height], palette, first_pixel


def test_registers_are_defined_before_any_pixel_and_the_picture_is_unchanged():
    rng = np.random.default_rng(0)
    arr = np.full((61, 97, 3), 255, dtype=np.uint8)
    arr[5:9, :, :] = (31, 119, 180)       # a blue line near the top (a legend swatch)
    arr[30:33, 10:80, :] = (44, 160, 44)  # green
    arr[40:, 50:, :] = rng.integers(0, 256, size=(21, 47, 3))  # many colours
    original = image_to_sixels(Image.fromarray(arr))
    hoisted = hoist_color_registers(original)

    before, pal_before, _ = decode(original)
    after, pal_after, first = decode(hoisted)
    assert np.array_equal(before, after) and pal_before == pal_after
    defs = [m.start() for m in re.finditer(r"#\d+;2;", hoisted)]
    assert defs and max(defs) < first, "a register is defined after pixels were drawn"
    # the fix is visible: textual-image's own output defines registers mid-image
    assert max(m.start() for m in re.finditer(r"#\d+;2;", original)) > decode(original)[2]


def test_redefined_registers_are_left_alone():
    s = '\x1bP0;0;0q"1;1;2;6#0;2;100;0;0~~-#0;2;0;0;100~~\x1b\\'
    assert hoist_color_registers(s) == s


def test_the_widget_encoder_is_routed_through_the_fix():
    assert install_sixel_register_fix()
    assert install_sixel_register_fix()  # idempotent: wrapped once
    out = sixel_widget.image_to_sixels(Image.new("RGB", (8, 12), (10, 200, 30)))
    assert out.count(";2;") == len(set(re.findall(r"#(\d+);2;", out)))
    assert getattr(sixel_widget.image_to_sixels, "_aisci_hoisted", False)
