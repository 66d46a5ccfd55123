"""Terminal graphics: which textual-image widget to use, chosen once per session.

textual-image probes the terminal when it is imported (sixel / kitty graphics / cell
size): it writes queries and reads the answers from stdin, waiting up to 0.1 s for each
one a terminal does not answer. Two ways to run it:

- :func:`choose_protocol` before ``App.run()`` (blocking; scripts and tests);
- :func:`deferred_protocol` + :func:`probe_in_app`: the app draws its first frame with
  the protocol still unknown and probes on a worker thread afterwards, with Textual's
  input thread paused so the answers reach the probe instead of arriving as key
  presses. The status bar shows the protocol once known.

Users can force a protocol with ``--image-protocol`` or ``tui.image_protocol``; ``none``
shows a file list instead of pictures (and never touches the terminal).
"""

from __future__ import annotations

import importlib
import os
import re
import select
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

PROTOCOLS = ("auto", "sixel", "kitty", "halfcell", "none")
#: The protocol shown while the terminal has not been probed yet.
PENDING = "detecting"
#: Longest wait for Textual's input thread to pause (it polls every 0.1 s).
_PAUSE_TIMEOUT_S = 2.0
#: How long answers the probe gave up on (0.1 s per query) are still caught and dropped.
_LATE_ANSWER_S = 0.15
_LATE_ANSWER_BYTES = 4096


@dataclass(frozen=True)
class ImageSupport:
    protocol: str
    """The protocol in use: sixel | kitty | halfcell | unicode | none, or PENDING."""
    widget_class: Any
    """A textual-image widget class, or None for ``none`` (and while pending)."""
    requested: str = ""
    """While pending: the protocol asked for (auto | sixel | kitty | halfcell)."""

    @property
    def pending(self) -> bool:
        return self.protocol == PENDING


def deferred_protocol(requested: str = "auto") -> ImageSupport:
    """``requested`` without touching the terminal: ``none`` at once, any other protocol
    pending until the running app calls :func:`probe_in_app` (even a forced protocol
    imports textual-image, which probes)."""
    if requested not in PROTOCOLS:
        raise ValueError(f"image protocol {requested!r}: expected one of {', '.join(PROTOCOLS)}")
    if requested == "none":
        return ImageSupport("none", None)
    return ImageSupport(PENDING, None, requested)


def probe_in_app(driver: object, requested: str) -> ImageSupport:
    """:func:`choose_protocol` inside a running Textual app; call it on a worker thread.

    The terminal answers a probe on stdin, where Textual's input thread would take the
    answer for key presses: that thread is stopped for the probe's duration (keys typed
    meanwhile may be lost, as with textual-image's own probe) and started again. When
    stdin is not a terminal nothing is queried and nothing needs pausing (headless
    tests). A driver whose input cannot be paused (not Textual's Linux driver) gets
    ``none``: probing there would hand the answers to the app as key presses."""
    stdin = sys.__stdin__
    if stdin is None or not stdin.isatty():
        return choose_protocol(requested)
    # textual-image's encoder and numpy (most of its import time; they probe nothing)
    # before input stops: the pause then lasts about as long as the terminal's answers
    importlib.import_module("textual_image._sixel")

    with _input_paused(driver) as paused:
        if not paused:
            return ImageSupport("none", None)
        try:
            return choose_protocol(requested)
        finally:
            typed = _late_answers_dropped(_read_for(stdin.fileno(), _LATE_ANSWER_S))
            if typed:
                _deliver_keys(driver, typed)


#: Answers to textual-image's queries: device attributes, a kitty graphics reply, the
#: cell size in pixels.
_ANSWER = re.compile(r"\x1b\[\?[0-9;]*c|\x1b_G[^\x1b]*\x1b\\|\x1b\[6;[0-9;]*t")


def _read_for(fd: int, wait_s: float) -> str:
    """What the terminal sends on ``fd`` within ``wait_s`` (bounded)."""
    end = time.monotonic() + wait_s
    data = b""
    while len(data) < _LATE_ANSWER_BYTES:
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            ready, _, _ = select.select([fd], [], [], left)
            chunk = os.read(fd, 1024) if ready else b""
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace")


def _late_answers_dropped(text: str) -> str:
    """``text`` without the answers the probe stopped waiting for (a busy machine, an
    SSH round trip): fed to the app they would be key presses (``?`` opens the help,
    digits switch panes). What remains was typed during the probe."""
    return _ANSWER.sub("", text)


def _deliver_keys(driver: object, typed: str) -> None:
    """Hand keys typed while input was paused to the app, parsed the way the driver's
    input thread parses them."""
    from textual._xterm_parser import XTermParser  # deferred: only after a probe

    process = getattr(driver, "process_message", None)
    if not callable(process):
        return
    parser = XTermParser()
    for event in [*parser.feed(typed), *parser.feed("")]:
        process(event)


@contextmanager
def _input_paused(driver: object) -> Iterator[bool]:
    """Stop a Textual LinuxDriver's input thread, yield True, start a new one after;
    yields False (nothing paused) for a driver without one. Uses the driver's own
    stop event and thread target, the way its ``disable_input`` stops it."""
    thread = getattr(driver, "_key_thread", None)
    stop = getattr(driver, "exit_event", None)
    target = getattr(driver, "_run_input_thread", None)
    if not (isinstance(thread, threading.Thread) and isinstance(stop, threading.Event)
            and callable(target) and thread.is_alive()):
        yield False
        return
    stop.set()
    thread.join(_PAUSE_TIMEOUT_S)
    if thread.is_alive():  # did not stop in time: leave it reading
        stop.clear()
        yield False
        return
    try:
        yield True
    finally:
        stop.clear()
        fresh = threading.Thread(target=target, name="textual-input")
        driver._key_thread = fresh  # type: ignore[attr-defined]  # the driver joins it at exit
        fresh.start()


def choose_protocol(requested: str = "auto", *, defer: bool = False) -> ImageSupport:
    """The widget for ``requested``, probing the terminal now (before ``App.run()``);
    with ``defer``, :func:`deferred_protocol` (the app probes after its first frame)."""
    if defer:
        return deferred_protocol(requested)
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
