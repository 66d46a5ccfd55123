"""Terminal graphics: which textual-image widget to use, chosen once at start.

textual-image probes the terminal when it is imported (sixel / kitty graphics / cell
size), which is impossible once Textual owns the terminal, so :func:`choose_protocol`
must run before ``App.run()``. Users can force a protocol with ``--image-protocol`` or
``tui.image_protocol``; ``none`` shows a file list instead of pictures.
"""

from __future__ import annotations

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
    import textual_image.renderable as renderables
    import textual_image.widget as widgets

    if requested == "sixel":
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
    return ImageSupport(name, cls)
