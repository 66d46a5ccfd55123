"""Figures and paper pages of the selected idea, shown one at a time.

The image widget is only given a new picture when the file set or a file's mtime
changes (watched with ``watchfiles``); nothing here changes per frame, so the terminal
is not sent the image again while logs stream elsewhere.

Figures and PDFs are read from the idea folder through :mod:`aisci.engine.lab.safe_files`
(no symlink followed, one link, bounded) and decoded from those bytes: a symlink an
experiment planted is never shown.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import watchfiles
from aisci.engine.errors import user_message
from aisci.engine.lab import safe_files
from aisci.tui.images import ImageSupport
from aisci.tui.lab_data import figures, newest_draft
from aisci.tui.widgets.media.pdf_pages import MAX_PAGES, page_count, render_page
from PIL import Image
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.widgets import Static
from textual_image._terminal import get_cell_size


def load_figure(root: Path, rel: str) -> Any:
    """The PNG ``root/rel`` of an idea folder as a decoded PIL image (read through
    safe_files, at most safe_files.MAX_FIGURE_BYTES); raises OSError/ValueError."""
    data = safe_files.read_bytes(root, rel, safe_files.MAX_FIGURE_BYTES)
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def fit_cells(png: Any, box_w: int, box_h: int) -> tuple[int, int]:
    """The largest (columns, rows) inside the box that keep the picture's aspect ratio,
    using the terminal's cell size in pixels. ``png``: a PIL image or an engine-owned
    PNG file (a rendered page)."""
    try:
        if isinstance(png, Path):
            with Image.open(png) as img:
                px_w, px_h = img.size
        else:
            px_w, px_h = png.size
    except OSError:
        return box_w, box_h
    cell = get_cell_size()
    cell_w, cell_h = (cell.width or 10), (cell.height or 20)
    scale = min(box_w * cell_w / px_w, box_h * cell_h / px_h)
    return (max(1, min(box_w, int(px_w * scale / cell_w))),
            max(1, min(box_h, int(px_h * scale / cell_h))))


@dataclass(frozen=True)
class MediaItem:
    label: str
    source: Path
    page: int | None = None  # PDF page (0-based) or None for a PNG


class MediaPane(Vertical, can_focus=True):
    BINDINGS = [
        Binding("right_square_bracket,right", "next", "Next figure", id="media-next"),
        Binding("left_square_bracket,left", "previous", "Prev figure", id="media-previous"),
        Binding("p", "paper", "Paper / figures", id="media-paper"),
    ]
    DEFAULT_CSS = """
    MediaPane #media-image { width: 1fr; height: 1fr; }
    MediaPane { align-horizontal: center; }
    """

    def __init__(self, images: ImageSupport, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images = images
        self.idea_dir: Path | None = None
        self.items: list[MediaItem] = []
        self.position = 0
        self._shown: tuple[Path, int | None, int] | None = None
        self._fitted_for = Size(0, 0)
        """The pane size the picture was last fitted to."""
        self._header = ""
        self._cache_dir = Path(tempfile.gettempdir()) / "aisci-tui-pages"

    def compose(self) -> ComposeResult:
        yield Static("no figures yet", id="media-header", classes="pane-header", markup=False)
        yield self._image_widget()

    def _image_widget(self) -> Any:
        if self.images.widget_class is not None:
            return self.images.widget_class(None, id="media-image")
        return Static("", id="media-image", markup=False)

    def set_images(self, images: ImageSupport) -> None:
        """The terminal's protocol became known (probed after the first frame): show
        the current figure with it."""
        if images == self.images:
            return
        self.images = images
        self.call_later(self._swap_image_widget)

    async def _swap_image_widget(self) -> None:
        await self.query_one("#media-image").remove()
        await self.mount(self._image_widget())
        self._shown = None
        self._show()

    def show_idea(self, directory: Path | None) -> None:
        if directory == self.idea_dir:
            return
        self.idea_dir = directory
        self.position = 0
        self.rescan()
        if directory is not None:
            self._watch(directory)

    @work(exclusive=True, group="media-watch")
    async def _watch(self, directory: Path) -> None:
        if not directory.is_dir():
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError:  # a read-only lab: nothing new can appear in it
                return

        def wanted(_change: object, path: str) -> bool:
            return path.endswith((".png", ".pdf")) and "/run_" not in path

        async for _changes in watchfiles.awatch(directory, watch_filter=wanted,
                                               debounce=400, recursive=True):
            if directory != self.idea_dir:
                return
            self.rescan()

    def rescan(self) -> None:
        """Re-list figures and the newest draft; swap the picture only if it changed."""
        items: list[MediaItem] = []
        if self.idea_dir is not None:
            items += [MediaItem(p.name, p) for p in figures(self.idea_dir)]
            draft = newest_draft(self.idea_dir)
            if draft is not None:
                try:
                    pages = min(page_count(self.idea_dir, self._rel(draft)), MAX_PAGES)
                except (RuntimeError, ValueError, OSError):  # being written, or refused
                    pages = 0
                items += [MediaItem(f"{draft.name} p.{i + 1}/{pages}", draft, i)
                          for i in range(pages)]
        current = self.items[self.position] if self.position < len(self.items) else None
        self.items = items
        if current in items:
            self.position = items.index(current)
        self.position = min(self.position, max(0, len(items) - 1))
        self._show()

    def _show(self) -> None:
        proto = self.images.protocol
        if not self.items:
            self._set_header(f"no figures or paper yet · images: {proto}")
            self._set_image(None, None)
            return
        item = self.items[self.position]
        jump = "p: figures" if item.page is not None else "p: paper" if any(
            i.page is not None for i in self.items) else ""
        self._set_header(f"{self.position + 1}/{len(self.items)} {item.label} · "
                         f"[/]: previous/next{' · ' + jump if jump else ''} · images: {proto}")
        self._set_image(item.source, item.page)

    def _set_header(self, text: str) -> None:
        if text != self._header:  # an update is a layout pass of the whole screen
            self._header = text
            self.query_one("#media-header", Static).update(text)

    def _rel(self, source: Path) -> str:
        """``source`` relative to the idea folder (its items all lie inside it)."""
        assert self.idea_dir is not None
        return source.relative_to(self.idea_dir).as_posix()

    def _set_image(self, source: Path | None, page: int | None) -> None:
        if source is None or self.idea_dir is None:
            key = None
        else:
            try:
                key = (source, page, safe_files.lstat(self.idea_dir,
                                                      self._rel(source)).st_mtime_ns)
            except OSError:
                key = None
        if key == self._shown:
            return  # same file, same version: do not re-send the picture
        self._shown = key
        if source is None or self.idea_dir is None:
            self._apply(None)
        elif page is not None:
            self._render_pdf_page(self.idea_dir, self._rel(source), page)
        else:
            self._load_figure(self.idea_dir, self._rel(source))

    @work(thread=True, exclusive=True, group="pdf-render")
    def _render_pdf_page(self, root: Path, rel: str, page: int) -> None:
        try:
            png: Path | None = render_page(root, rel, page, self._cache_dir)
        except (RuntimeError, ValueError, OSError) as exc:
            self.app.call_from_thread(self.notify,
                                      f"{rel}: cannot render page: {user_message(exc)}",
                                      severity="warning")
            png = None
        self.app.call_from_thread(self._apply, png)

    @work(thread=True, exclusive=True, group="pdf-render")
    def _load_figure(self, root: Path, rel: str) -> None:
        try:
            img = load_figure(root, rel)
        except (OSError, ValueError) as exc:  # refused (safe_files.UnsafeFile) or not a PNG
            self.app.call_from_thread(self.notify, f"{rel}: cannot show it: {user_message(exc)}",
                                      severity="warning")
            img = None
        self.app.call_from_thread(self._apply, img, rel)

    def _apply(self, png: Any, label: str | None = None) -> None:
        """Show ``png``: a PIL image of a figure (``label`` names it) or the PNG file of a
        rendered page (engine-owned cache), None for nothing."""
        widget = self.query_one("#media-image")  # a Static, or images.widget_class
        if self.images.widget_class is None:
            name = label or (png.name if isinstance(png, Path) else "")
            off = "detecting the terminal's graphics" if self.images.pending else "images off"
            text = "" if png is None else f"({off}) {name}"
            widget.update(text)  # type: ignore[attr-defined]  # the Static
            return
        if png is not None:
            # size the widget in cells ourselves: a picture that overflows its area would
            # make a sixel terminal scroll the whole screen
            w, h = fit_cells(png, self.size.width, max(1, self.size.height - 1))
            widget.styles.width, widget.styles.height = w, h
        widget.image = png  # type: ignore[attr-defined]  # a textual-image widget

    def on_resize(self, event: events.Resize) -> None:
        # Shown again at the size it was fitted to (a pane switch): nothing to redo, no
        # figure to read again.
        if not event.size.area or event.size == self._fitted_for:
            return
        self._fitted_for = event.size
        self._shown = None
        self._show()

    def action_next(self) -> None:
        if self.items:
            self.position = (self.position + 1) % len(self.items)
            self._show()

    def action_paper(self) -> None:
        """Jump to the paper's first page, or from the paper back to the first figure."""
        pages = [i for i, item in enumerate(self.items) if item.page is not None]
        if not pages:
            self.notify("no paper yet for this idea", severity="warning", timeout=3)
            return
        on_paper = self.position in pages
        figures = [i for i, item in enumerate(self.items) if item.page is None]
        self.position = (figures[0] if figures else pages[0]) if on_paper else pages[0]
        self._show()

    def action_previous(self) -> None:
        if self.items:
            self.position = (self.position - 1) % len(self.items)
            self._show()
