"""Render pages of a PDF to PNG files with PyMuPDF, cached by (file, mtime, page)."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Pixels per inch of the rendered page; enough for a crisp sixel at ~80 columns.
RENDER_DPI = 110
MAX_PAGES = 12


def page_count(pdf: Path) -> int:
    import pymupdf

    with pymupdf.open(pdf) as doc:
        return int(doc.page_count)


def render_page(pdf: Path, page: int, cache_dir: Path) -> Path:
    """The PNG of ``page`` (0-based) of ``pdf``; rendered once per PDF version."""
    import pymupdf

    st = pdf.stat()
    key = hashlib.sha256(f"{pdf.resolve()}:{st.st_mtime_ns}:{st.st_size}".encode()).hexdigest()
    out = cache_dir / f"{key[:20]}-p{page + 1}.png"
    if out.exists():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    with pymupdf.open(pdf) as doc:
        pix = doc[page].get_pixmap(dpi=RENDER_DPI)
        tmp = out.with_suffix(".tmp.png")
        pix.save(tmp)
        tmp.replace(out)
    return out
