"""BibTeX built from OpenAlex metadata: stable keys, LaTeX escaping, and it compiles."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from aisci.engine.config import Settings
from aisci.engine.literature import Literature, Paper, latex_escape, make_key, rekey
from aisci.engine.literature.bibtex import ensure_bibtex, parse_fields, unique_keys
from support.literature_server import LiteratureServer, load_corpus


def test_keys_are_stable_and_ascii():
    p = Paper(paper_id="x", title="Towards Understanding Grokking", authors=["Ziming Liu"],
              year=2022)
    assert make_key(p) == "liu2022understanding"
    q = Paper(paper_id="y", title="Über die Methode", authors=["Łukasz Żółć"], year=2017)
    assert make_key(q) == "zolc2017uber"
    assert make_key(Paper(paper_id="z", title="", authors=[])) == "anonpaper"
    twins = [Paper(paper_id=str(i), title="Grokking", authors=["A Power"], year=2022)
             for i in range(3)]
    assert list(unique_keys(twins).values()) == ["power2022grokking", "power2022grokkingb",
                                                 "power2022grokkingc"]


def test_latex_escape():
    assert latex_escape("A & B 50% $x_1$ #1 {y} ~ ^") == (
        r"A \& B 50\% \$x\_1\$ \#1 \textbraceleft{}y\textbraceright{} \textasciitilde{} "
        r"\textasciicircum{}")
    assert latex_escape("Gödel–Łukasz <i>et</i> al") == r'G{\"{o}}del--{\L}ukasz et al'


def test_s2_bibtex_quirks_are_cleaned():
    raw = ("@['JournalArticle', 'Conference']{Power2022GrokkingGB, title = {Grokking & more}, "
           "author = {Alethea Power}, journal = {ArXiv}, volume = {abs/2201.02177}, "
           "pages = {1-10}, number = {{3}}, year = {2022}}")
    p = Paper(paper_id="s", title="Grokking & more", authors=["Alethea Power"], year=2022,
              venue="arXiv.org", bibtex=raw)
    bib = ensure_bibtex(p).bibtex
    assert bib.startswith("@misc{power2022grokking,")
    assert "title = {{Grokking \\& more}}" in bib
    assert "volume = {abs/2201.02177}" in bib and "pages = {1--10}" in bib
    assert "number" not in bib  # braces inside: not trusted


def test_parse_fields_nested():
    f = parse_fields('@misc{k, title = {A {B} c}, year = 2020, note = "x, y"}')
    assert f == {"title": "A {B} c", "year": "2020", "note": "x, y"}


needs_tex = pytest.mark.skipif(not (shutil.which("pdflatex") and shutil.which("bibtex")),
                               reason="pdflatex/bibtex not installed")


@needs_tex
@pytest.mark.needs_tex
async def test_openalex_bibtex_compiles(tmp_path):
    corpus = load_corpus()
    # Awkward metadata a real OpenAlex record can carry.
    corpus.append({**corpus[0], "paper_id": "weird", "title":
                   "Loss & 100% <i>accuracy</i>: the $O(n)$ case_1 {#2} of Gödel–Ørsted ~ 東京",
                   "authors": ["Łukasz Żółć", "José Núñez-García", "Søren Ødegård"],
                   "venue": "Proceedings of Foo & Bar_Conference", "doi": "10.1/a_b%c"})
    with LiteratureServer(corpus) as srv:
        s = Settings()
        s.literature.sources = ["openalex"]
        s.literature.openalex_url = srv.openalex_url
        s.literature.requests_per_s_without_key = 100
        papers = await Literature(s, None).search("the of a accuracy diffusion grokking",
                                                  limit=25)
        assert len(papers) >= 10 and all(p.source == "openalex" for p in papers)
        s.literature.sources = ["semantic_scholar"]
        s.literature.semantic_scholar_url = srv.s2_url
        s2 = await Literature(s, None).search("grokking diffusion", limit=5)
    assert s2 and all(p.source == "semantic_scholar" for p in s2)
    papers += s2  # same papers from both sources: keys must still be unique
    keys = unique_keys(papers)
    assert len(set(keys.values())) == len(papers)
    bib = "\n".join(rekey(p.bibtex, keys[p.paper_id]) for p in papers)
    (tmp_path / "refs.bib").write_text(bib, encoding="utf-8")
    cites = ",".join(keys.values())
    (tmp_path / "paper.tex").write_text(
        "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{url}\n"
        f"\\begin{{document}}\nSee \\cite{{{cites}}}.\n"
        "\\bibliographystyle{plain}\n\\bibliography{refs}\n\\end{document}\n")

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              errors="replace")

    assert run("pdflatex", "-interaction=nonstopmode", "paper.tex").returncode == 0
    b = run("bibtex", "paper")
    assert b.returncode == 0, b.stdout
    assert "Warning--I didn't find a database entry" not in b.stdout
    r = run("pdflatex", "-interaction=nonstopmode", "paper.tex")
    r = run("pdflatex", "-interaction=nonstopmode", "paper.tex")
    assert r.returncode == 0, r.stdout[-2000:]
    assert "undefined" not in r.stdout, r.stdout[-2000:]
    bbl = (tmp_path / "paper.bbl").read_text(errors="replace")
    assert "Denoising Diffusion Probabilistic Models" in bbl
    assert (tmp_path / "paper.pdf").stat().st_size > 1000
