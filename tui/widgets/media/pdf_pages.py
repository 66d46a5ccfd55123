"""Render pages of a PDF to PNG files with PyMuPDF, cached by (file, version, page).

The PDF lies in an idea folder, which an experiment wrote: it is read through
:mod:`aisci.engine.lab.safe_files` (no symlink followed, one link, at most
``safe_files.MAX_PDF_BYTES``) and PyMuPDF opens the bytes, never the path.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from aisci.engine.lab import safe_files

#: Pixels per inch of the rendered page; enough for a crisp sixel at ~80 columns.
RENDER_DPI = 110
MAX_PAGES = 12


def _version(root: Path, rel: str) -> tuple[str, int, int, int]:
    """(absolute path, inode, mtime ns, size) of the PDF's own entry (no symlink)."""
    st = safe_files.lstat(root, rel)
    return os.path.abspath(Path(root) / rel), st.st_ino, st.st_mtime_ns, st.st_size


def _read(root: Path, rel: str) -> bytes:
    return safe_files.read_bytes(root, rel, safe_files.MAX_PDF_BYTES)


@functools.lru_cache(maxsize=64)
def _count(root: Path, rel: str, version: tuple[str, int, int, int]) -> int:
    import pymupdf  # deferred: a heavy import, only when a paper is shown

    with pymupdf.open(stream=_read(root, rel), filetype="pdf") as doc:
        return int(doc.page_count)


def page_count(root: Path, rel: str) -> int:
    """Pages of the PDF ``root/rel`` (read once per version of the file)."""
    return _count(Path(root), rel, _version(root, rel))


def render_page(root: Path, rel: str, page: int, cache_dir: Path) -> Path:
    """The PNG of ``page`` (0-based) of the PDF ``root/rel``; rendered once per version."""
    import pymupdf  # deferred: a heavy import, only when a paper is shown

    key = hashlib.sha256(repr(_version(root, rel)).encode()).hexdigest()
    out = cache_dir / f"{key[:20]}-p{page + 1}.png"
    if out.exists():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    with pymupdf.open(stream=_read(root, rel), filetype="pdf") as doc:
        pix = doc[page].get_pixmap(dpi=RENDER_DPI)
        tmp = out.with_suffix(".tmp.png")
        pix.save(tmp)
        tmp.replace(out)
    return out
