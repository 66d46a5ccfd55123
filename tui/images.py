"""Terminal graphics: which textual-image widget to use, chosen once at start.

textual-image probes the terminal when it is imported (sixel / kitty graphics / cell
size), which is impossible once Textual owns the terminal, so :func:`choose_protocol`
must run before ``App.run()``. Users can force a protocol with ``--image-protocol`` or
``tui.image_protocol``; ``none`` shows a file list instead of pictures.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

PROTOCOLS = ("auto", "sixel", "kitty", "halfcell", "none")


@dataclass(frozen=True)
class ImageSupport:
    protocol: str
    """The protocol in use: sixel | kitty | halfcell | unicode | none."""
    widget_class: Any
    """A textual-image widget class, or None for ``none``."""


def choose_protocol(requested: str = "auto") -> ImageSupport:
    if requested not in PROTOCOLS:
        raise ValueError(f"image protocol {requested!r}: expected one of {', '.join(PROTOCOLS)}")
    if requested == "none":
        return ImageSupport("none", None)
    with no_graphics_query_in_multiplexer():
        # deferred: textual-image probes the terminal when imported (see the docstring)
        import textual_image.renderable as renderables
        import textual_image.widget as widgets

    if requested == "sixel":
        install_sixel_register_fix()
        return ImageSupport("sixel", widgets.SixelImage)
    if requested == "kitty":
        return ImageSupport("kitty", widgets.TGPImage)
    if requested == "halfcell":
        return ImageSupport("halfcell", widgets.HalfcellImage)
    detected = renderables.Image
    names = {renderables.SixelImage: ("sixel", widgets.SixelImage),
             renderables.TGPImage: ("kitty", widgets.TGPImage),
             renderables.HalfcellImage: ("halfcell", widgets.HalfcellImage),
             renderables.UnicodeImage: ("unicode", widgets.UnicodeImage)}
    name, cls = names.get(detected, ("halfcell", widgets.HalfcellImage))
    if name == "sixel":
        install_sixel_register_fix()
    return ImageSupport(name, cls)


# -- the kitty graphics probe under tmux / screen ------------------------------------------

#: An APC sequence: the kitty graphics protocol's query starts with it.
_APC = "\x1b_"


class _DropApc:
    """``sys.__stdout__`` while textual-image probes the terminal inside tmux or GNU
    screen: APC sequences (the kitty graphics query ``ESC _ G i=...;AAAA ESC \\``) are
    dropped, everything else (the sixel query) is written. Both multiplexers take an APC
    string as the window title / status message, so the probe leaked into tmux's status
    bar; neither shows kitty graphics to the outer terminal anyway."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def write(self, text: str) -> int:
        if text.startswith(_APC):
            return len(text)
        return int(self._real.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def in_multiplexer() -> bool:
    return bool(os.environ.get("TMUX") or os.environ.get("STY"))


@contextmanager
def no_graphics_query_in_multiplexer() -> Iterator[None]:
    """Within tmux or screen, keep APC probes away from the terminal (see _DropApc)."""
    real = sys.__stdout__
    if real is None or not in_multiplexer():
        yield
        return
    sys.__stdout__ = _DropApc(real)  # type: ignore[assignment,misc]  # read by the probe only
    try:
        yield
    finally:
        sys.__stdout__ = real  # type: ignore[misc]  # restored


# -- sixel colour registers ---------------------------------------------------------------

_REGISTER_DEF = re.compile(r"#(\d+);2;\d+;\d+;\d+")
_HEADER = re.compile(r'\x1bP[0-9;]*q(?:"[0-9;]*)?')


def hoist_color_registers(sixel: str) -> str:
    """Move every colour-register definition (``#N;2;R;G;B``) to just after the header.

    textual-image defines each register at its first use, mid-image. xterm (seen with
    XTerm 379 as a VT340) then paints the bands drawn before some definitions with the
    registers' default colours: a grey band over the top of every plot and legend
    swatches in the wrong colour. Defining the whole palette first, as ImageMagick and
    libsixel do, renders correctly everywhere; pixels and their order are unchanged.
    """
    header = _HEADER.match(sixel)
    if header is None:
        return sixel
    defs: dict[str, str] = {}
    for m in _REGISTER_DEF.finditer(sixel, header.end()):
        if defs.setdefault(m.group(1), m.group(0)) != m.group(0):
            return sixel  # a register redefined mid-image: order matters, keep it
    if not defs:
        return sixel
    body = _REGISTER_DEF.sub(lambda m: f"#{m.group(1)}", sixel[header.end():])
    return sixel[:header.end()] + "".join(defs.values()) + body


def install_sixel_register_fix() -> bool:
    """Route textual-image's sixel widget through :func:`hoist_color_registers`.
    Idempotent; returns False when this textual-image has no such hook (then its own
    encoder is used unchanged)."""
    import textual_image.widget.sixel as sixel_widget  # deferred: probes the terminal

    encode = getattr(sixel_widget, "image_to_sixels", None)
    if encode is None:
        return False
    if getattr(encode, "_aisci_hoisted", False):
        return True

    def encode_hoisted(*args: Any, **kwargs: Any) -> str:
        return hoist_color_registers(encode(*args, **kwargs))

    encode_hoisted._aisci_hoisted = True  # type: ignore[attr-defined]  # a marker attribute
    # replaced in place: the module imports the encoder without re-exporting it
    sixel_widget.image_to_sixels = encode_hoisted  # type: ignore[attr-defined]  # not exported
    return True
