"""BibTeX built from paper metadata: stable keys (``power2022grokking``) and LaTeX-safe
field values, so OpenAlex results (which carry no BibTeX) can be cited like any other."""

from __future__ import annotations

import html
import re
import unicodedata

from aisci.engine.literature.paper import Paper

_STOPWORDS = {
    "a", "an", "the", "on", "of", "in", "for", "to", "and", "with", "via", "towards",
    "toward", "is", "are", "from", "by", "at", "as", "beyond", "when", "what", "how", "why",
}

# Characters with no accent decomposition that LaTeX spells with a command.
_SPECIAL = {
    "ł": r"{\l}", "Ł": r"{\L}", "ø": r"{\o}", "Ø": r"{\O}", "ß": r"{\ss}", "æ": r"{\ae}",
    "Æ": r"{\AE}", "œ": r"{\oe}", "Œ": r"{\OE}", "ı": r"{\i}", "đ": "d", "Đ": "D",
    "–": "--", "—": "---", "‘": "`", "’": "'", "“": "``", "”": "''", "…": r"\ldots{}",
    "\u00a0": "~", "×": r"$\times$", "−": "-",
}
# Combining marks -> LaTeX accent commands.
_ACCENTS = {
    "\u0301": "'", "\u0300": "`", "\u0302": "^", "\u0308": '"', "\u0303": "~",
    "\u0327": "c", "\u030c": "v", "\u030a": "r", "\u0304": "=", "\u0307": ".",
    "\u0306": "u", "\u030b": "H", "\u0328": "k",
}
_ASCII_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    # BibTeX counts braces whatever precedes them: \{ would unbalance the field
    "{": r"\textbraceleft{}", "}": r"\textbraceright{}", "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}",
}
_TAG = re.compile(r"<[^>]{1,40}>")


def latex_escape(text: str) -> str:
    """Plain text (possibly with HTML tags/entities and Unicode) to pdflatex-safe text."""
    text = html.unescape(_TAG.sub("", text or ""))
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", " ".join(text.split())):
        if ord(ch) < 32 or 127 <= ord(ch) < 160:  # control characters: never printed
            continue
        if ch in _ASCII_SPECIAL:
            out.append(_ASCII_SPECIAL[ch])
        elif ord(ch) < 128:
            out.append(ch)
        elif ch in _SPECIAL:
            out.append(_SPECIAL[ch])
        else:
            out.append(_accented(ch))
    return "".join(out)


def _accented(ch: str) -> str:
    decomposed = unicodedata.normalize("NFD", ch)
    base, marks = decomposed[0], decomposed[1:]
    if ord(base) < 128 and marks and all(m in _ACCENTS for m in marks):
        s = base if base not in "ij" else "\\" + base
        for m in marks:
            s = f"\\{_ACCENTS[m]}{{{s}}}"
        return "{" + s + "}"
    # Anything else (Greek, CJK, symbols) has no portable pdflatex spelling: keep the
    # ASCII part of its compatibility form, or drop it.
    return unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()


_KEY_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae",
                           "Æ": "AE", "œ": "oe", "Œ": "OE", "đ": "d", "Đ": "D", "ı": "i"})


def _ascii_word(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_KEY_FOLD)).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]", "", folded)


def make_key(paper: Paper) -> str:
    """``<first author surname><year><first significant title word>``, ASCII only."""
    surname = _ascii_word(paper.authors[0].split()[-1]) if paper.authors and \
        paper.authors[0].split() else "anon"
    words = [_ascii_word(w) for w in re.split(r"[\s\-:/]+", html.unescape(_TAG.sub("", paper.title)))]
    word = next((w for w in words if w and w not in _STOPWORDS), "paper")
    return f"{surname or 'anon'}{paper.year or ''}{word}"


def unique_keys(papers: list[Paper]) -> dict[str, str]:
    """paper_id -> key, suffixing b, c, ... when two papers would share a key."""
    seen: dict[str, int] = {}
    out: dict[str, str] = {}
    for p in papers:
        key = p.cite_key or make_key(p)
        n = seen.get(key, 0)
        seen[key] = n + 1
        out[p.paper_id] = key if n == 0 else f"{key}{chr(ord('a') + n)}"
    return out


_CONFERENCE = re.compile(
    r"conference|proceedings|symposium|workshop|neurips|nips|iclr|icml|aaai|ijcai|cvpr|iccv|"
    r"eccv|acl|emnlp|naacl|chi\b|advances in neural", re.IGNORECASE)


def entry_type(paper: Paper) -> str:
    venue = paper.venue or ""
    if not venue or re.search(r"arxiv|preprint|biorxiv|ssrn", venue, re.IGNORECASE):
        return "misc"
    return "inproceedings" if _CONFERENCE.search(venue) else "article"


#: Fields of a source's own BibTeX worth keeping on top of the metadata.
KEPT_FIELDS = ("volume", "number", "pages", "publisher")


def build_bibtex(paper: Paper, key: str | None = None,
                 extra: dict[str, str] | None = None) -> str:
    """A BibTeX entry for ``paper`` from its metadata (plus sanitised ``extra`` fields)."""
    key = key or make_key(paper)
    kind = entry_type(paper)
    fields: list[tuple[str, str]] = [("title", "{" + latex_escape(paper.title) + "}")]
    if paper.authors:
        fields.append(("author", " and ".join(latex_escape(a) for a in paper.authors)))
    if paper.year:
        fields.append(("year", str(paper.year)))
    if kind == "article":
        fields.append(("journal", latex_escape(paper.venue)))
    elif kind == "inproceedings":
        fields.append(("booktitle", latex_escape(paper.venue)))
    elif paper.venue:
        fields.append(("howpublished", latex_escape(paper.venue)))
    for name, value in (extra or {}).items():
        clean = _sanitise_value(value)
        if clean:
            fields.append((name, clean))
    if paper.doi:
        fields.append(("doi", latex_escape(paper.doi)))
    if paper.url:
        # url fields are read verbatim by url-aware styles; escape only what breaks BibTeX.
        fields.append(("url", paper.url.replace("{", "%7B").replace("}", "%7D")))
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@{kind}{{{key},\n{body}\n}}\n"


def _sanitise_value(value: str) -> str:
    """A field value from a source's BibTeX, safe for LaTeX: plain text is escaped, and
    anything with braces or backslashes (already LaTeX, maybe broken) is dropped."""
    value = " ".join(value.split())
    if any(ch in value for ch in "{}\\"):
        return ""
    return latex_escape(value).replace("--", "-").replace("-", "--") if value else ""


MAX_BIBTEX_CHARS = 20_000
"""A source's BibTeX entry longer than this is not read (a real one is under 5 KB)."""
_PAIR = re.compile(r"\s*(\w+)\s*=\s*")
_SKIP = re.compile(r"\w+|.", re.DOTALL)


def parse_fields(bibtex: str) -> dict[str, str]:
    """``name = {value}`` / ``"value"`` / bare pairs of one entry (nested braces kept);
    nothing from an entry over MAX_BIBTEX_CHARS. Linear in the entry's length."""
    out: dict[str, str] = {}
    if len(bibtex) > MAX_BIBTEX_CHARS:
        return out
    start = bibtex.find(",")
    n = len(bibtex)
    i = start + 1 if start >= 0 else n
    while i < n:
        m = _PAIR.match(bibtex, i)
        if not m:
            skip = _SKIP.match(bibtex, i)  # past the whole word, not one letter of it
            i = skip.end() if skip else i + 1
            continue
        name, j = m.group(1).lower(), m.end()
        if j < n and bibtex[j] == "{":
            depth, k = 0, j
            while k < n:
                depth += {"{": 1, "}": -1}.get(bibtex[k], 0)
                if depth == 0:
                    break
                k += 1
            out[name], i = bibtex[j + 1:k], k + 1
        elif j < n and bibtex[j] == '"':
            k = bibtex.find('"', j + 1)
            k = n if k < 0 else k
            out[name], i = bibtex[j + 1:k], k + 1
        else:
            k = j
            while k < n and bibtex[k] not in ",}\n":
                k += 1
            out[name], i = bibtex[j:k].strip(), k + 1
    return out


def rekey(bibtex: str, key: str) -> str:
    """The same (well-formed) entry under another key, e.g. from :func:`unique_keys`."""
    return re.sub(r"^(\s*@\w+\s*\{)\s*[^,\s]*\s*,", lambda m: f"{m.group(1)}{key},", bibtex,
                  count=1)


def ensure_bibtex(paper: Paper) -> Paper:
    """Give ``paper`` a clean BibTeX entry under its stable key.

    Sources' own BibTeX is not trusted verbatim (Semantic Scholar emits entry types like
    ``@['JournalArticle']`` and unescaped ``&``): the entry is rebuilt from metadata and
    only plain volume/number/pages/publisher values are carried over."""
    fields = parse_fields(paper.bibtex) if paper.bibtex.strip().startswith("@") else {}
    extra = {k: fields[k] for k in KEPT_FIELDS if fields.get(k)}
    paper.bibtex = build_bibtex(paper, make_key(paper), extra)
    return paper
