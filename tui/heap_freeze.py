"""Short full collections in a UI that runs for days: what lives as long as the app is
moved out of the cyclic garbage collector's reach (``gc.freeze``).

A full collection walks every tracked object that is not frozen. Frozen at the first
frame only, the heap still grew by what was imported afterwards (the PDF and image
libraries, a provider's SDK at its first call: 60,000 objects on the demo lab within
seconds), and each full collection, about one every 1.5 s while keys are pressed,
paused the UI 30-40 ms (10-15 ms once those were frozen too). So the heap is frozen at
the first frame and again whenever modules were imported since, at most
``MAX_FREEZES`` times: a frozen object that later becomes cyclic garbage is never
collected, so the number of freezes stays bounded. Each freeze collects first (no
garbage of the moment is frozen)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

CHECK_S = 2.0
"""How often the UI asks whether modules were imported since the last freeze."""
MIN_NEW_MODULES = 10
"""Imported modules that make a new freeze worth its collection (one pause)."""
MAX_FREEZES = 8


def _module_count() -> int:
    return len(sys.modules)


class HeapFreezer:
    def __init__(self, modules: Callable[[], int] = _module_count,
                 collect: Callable[[], object] = gc.collect,
                 freeze: Callable[[], None] = gc.freeze) -> None:
        self._modules, self._collect, self._freeze = modules, collect, freeze
        self.freezes = 0
        self._modules_then: int | None = None

    def freeze(self) -> None:
        if self.freezes >= MAX_FREEZES:
            return
        self._collect()
        self._freeze()
        self.freezes += 1
        self._modules_then = self._modules()

    def check(self) -> None:
        """Freeze again if enough modules were imported since the last freeze."""
        if self._modules_then is not None and \
                self._modules() - self._modules_then >= MIN_NEW_MODULES:
            self.freeze()


HEAP = HeapFreezer()
"""The process's one freezer: the bound holds across the apps one process runs in turn
(attach again, restart the engine)."""
