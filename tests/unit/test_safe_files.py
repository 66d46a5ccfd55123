"""No path from an idea folder is trusted (engine.safe_files and its call sites).

Everything is real: symlinks to files outside the folder, hard links (``os.link``) to an
outside file, FIFOs, sparse multi-GB files, symlinked intermediate folders, a thread
swapping a folder for a symlink while reads and writes run, and experiments driven
through the real experiment stage (scripted model, real executor, real git) that plant
such entries for the engine to read or write afterwards.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pymupdf
import pytest
from aisci.engine.agent.edit_tools import EditTools
from aisci.engine.lab import safe_files as sf
from aisci.engine.lab.workspace import IdeaWorkspace, read_final_info
from aisci.engine.llm.base import ToolCall
from aisci.engine.paper.lint import bib_keys, find_graphic
from aisci.engine.paper.run_facts import figures, load_run_facts, notes
from aisci.engine.stages.experiment import run_experiments
from aisci.tui import lab_data
from aisci.tui.widgets.log.line_index import LineIndex
from aisci.tui.widgets.media.media_pane import load_figure
from aisci.tui.widgets.media.pdf_pages import page_count, render_page
from support.labs import FlakyProvider, add_idea, make_ctx

SECRET = "S3CRET-id_rsa-0d1e2f"
SECRET_INFO = {"toy": {"means": {"final_loss": 0.4242}}, "key": SECRET}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Host files the experiment must never make the engine read or write."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.json").write_text(json.dumps(SECRET_INFO))
    (d / "secret.txt").write_text(SECRET + "\n")
    (d / "bashrc").write_text("# host rc file\n")
    return d


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "idea"
    (d / "run_1").mkdir(parents=True)
    (d / "run_1" / "final_info.json").write_text(json.dumps({"toy": {"means": {"x": 1}}}))
    (d / "notes.txt").write_text("notes\n")
    return d


def refused(fn, *args, **kwargs) -> str:
    with pytest.raises(sf.UnsafeFile) as info:
        fn(*args, **kwargs)
    return str(info.value)


# -- the rule --------------------------------------------------------------------------

def test_valid_files_read_and_write_as_before(root):
    assert sf.read_json(root, "run_1/final_info.json") == {"toy": {"means": {"x": 1}}}
    assert sf.read_text(root, "notes.txt") == "notes\n"
    assert sf.read_text(root, "./notes.txt") == "notes\n"
    sf.write_text(root, "run_1/run_env.json", "{}\n")
    sf.write_text(root, "latex/x.tex", "x", make_dirs=True)
    assert (root / "latex" / "x.tex").read_text() == "x"
    assert sf.is_file(root, "notes.txt") and sf.is_dir(root, "run_1")
    assert not sf.lexists(root, "nothing") and sf.kind(root, "nothing") is None
    with pytest.raises(FileNotFoundError):
        sf.read_text(root, "run_9/final_info.json")


def test_symlinks_are_refused_with_the_path_and_the_reason(root, outside):
    (root / "run_2").mkdir()
    (root / "run_2" / "final_info.json").symlink_to(outside / "secret.json")
    assert refused(sf.read_json, root, "run_2/final_info.json") == \
        "run_2/final_info.json is a symlink: refused"
    (root / "run_3").symlink_to(outside)  # a symlinked folder on the way
    assert refused(sf.read_json, root, "run_3/secret.json") == "run_3 is a symlink: refused"
    assert refused(sf.write_text, root, "run_3/new.txt", "x") == "run_3 is a symlink: refused"
    assert not (outside / "new.txt").exists()
    (root / "dangling").symlink_to(outside / "nothing")
    assert sf.lexists(root, "dangling") and not sf.is_file(root, "dangling")
    assert sf.kind(root, "run_3") == "symlink" and not sf.is_dir(root, "run_3")


def test_hard_link_to_a_host_file_is_refused(root, outside):
    os.link(outside / "secret.txt", root / "stolen.txt")
    assert refused(sf.read_text, root, "stolen.txt") == "stolen.txt is a hard link: refused"


def test_fifo_and_device_are_refused_without_hanging(root):
    os.mkfifo(root / "notes.fifo")
    started = time.monotonic()
    assert refused(sf.read_text, root, "notes.fifo") == "notes.fifo is a FIFO: refused"
    assert refused(sf.read_tail, root, "notes.fifo") == "notes.fifo is a FIFO: refused"
    assert time.monotonic() - started < 2
    (root / "dev").symlink_to("/dev/zero")
    assert refused(sf.read_bytes, root, "dev", 10) == "dev is a symlink: refused"


def test_oversized_files_are_refused_or_cut(root):
    big = root / "figure.png"
    with big.open("wb") as fh:
        fh.truncate(int(3.1 * 1024**3))  # sparse: 3.1 GB without using the disk
    assert refused(sf.read_bytes, root, "figure.png", sf.MAX_PDF_BYTES) == \
        "figure.png is 3.1 GB, more than the 64 MB allowed: refused"
    assert len(sf.read_bytes(root, "figure.png", 1000, truncate=True)) == 1000
    (root / "t.txt").write_text("é" * 10)  # 2 bytes each: a cut never splits one
    assert sf.read_text(root, "t.txt", 5, truncate=True) == "éé"
    assert sf.read_tail(root, "figure.png", 16) == b"\0" * 16


@pytest.mark.parametrize("rel, reason", [
    ("../outside/secret.txt", "leaves the folder ('..')"),
    ("run_1/../../x", "leaves the folder ('..')"),
    ("/etc/passwd", "is an absolute path"),
    ("run_1//final_info.json", "has an empty path component"),
    ("run_1/", "has an empty path component"),
    ("", "is an empty path"),
])
def test_paths_leaving_the_folder_are_refused(root, rel, reason):
    assert reason in refused(sf.read_text, root, rel)
    assert reason in refused(sf.write_text, root, rel or "", "x")


def test_writes_replace_a_planted_link_never_its_target(root, outside):
    (root / "run_1" / "run_env.json").symlink_to(outside / "bashrc")
    sf.write_text(root, "run_1/run_env.json", '{"python": "3"}\n')
    os.link(outside / "secret.txt", root / "notes2.txt")
    sf.write_text(root, "notes2.txt", "mine\n")
    assert (outside / "bashrc").read_text() == "# host rc file\n"
    assert (outside / "secret.txt").read_text() == SECRET + "\n"
    assert not (root / "run_1" / "run_env.json").is_symlink()
    assert (root / "notes2.txt").read_text() == "mine\n"
    assert os.stat(root / "notes2.txt").st_nlink == 1
    # the permission bits of a replaced regular file are kept, no temporary file is left
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    sf.write_text(root, "run.sh", "#!/bin/sh\necho\n")
    assert stat.S_IMODE(os.stat(root / "run.sh").st_mode) == 0o755
    assert not [p for p in root.iterdir() if p.name.endswith(".aisci-tmp")]
    (root / "adir").mkdir()
    assert refused(sf.write_text, root, "adir", "x") == "adir is a directory: refused"


def test_open_log_replaces_whatever_was_planted(root, outside):
    with sf.open_log(root, "logs/run_1.log") as fh:
        fh.write("attempt 1\n")
    with sf.open_log(root, "logs/run_1.log") as fh:  # a regular log is appended to
        fh.write("attempt 2\n")
    assert (root / "logs" / "run_1.log").read_text() == "attempt 1\nattempt 2\n"
    logs = root / "logs"
    (logs / "a.log").symlink_to(outside / "bashrc")
    os.link(outside / "secret.txt", logs / "b.log")
    os.mkfifo(logs / "c.log")
    (logs / "d.log").mkdir()
    (logs / "d.log" / "x").write_text("x")
    for name in ("a.log", "b.log", "c.log", "d.log"):
        with sf.open_log(root, f"logs/{name}") as fh:
            fh.write("engine\n")
        assert (logs / name).read_text() == "engine\n"
        st = os.lstat(logs / name)
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    # a symlinked logs/ folder is replaced by a real one
    (root / "logs2").symlink_to(outside)
    with sf.open_log(root, "logs2/run_1.log") as fh:
        fh.write("engine\n")
    assert (root / "logs2").is_dir() and not (root / "logs2").is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == ["bashrc", "secret.json", "secret.txt"]
    assert (outside / "bashrc").read_text() == "# host rc file\n"
    assert (outside / "secret.txt").read_text() == SECRET + "\n"


def test_listing_walking_removing_and_copying_never_follow(root, outside, tmp_path):
    (root / "run_2").symlink_to(outside)
    (root / "fig.png").symlink_to(outside / "secret.txt")
    (root / "real.png").write_bytes(b"png")
    kinds = {e.name: e.kind for e in sf.list_dir(root)}
    assert kinds["run_2"] == "symlink" and kinds["fig.png"] == "symlink"
    assert kinds["real.png"] == "file" and kinds["run_1"] == "dir"
    paths = [e.path for e in sf.walk(root)]
    assert "run_1/final_info.json" in paths and not any(p.startswith("run_2/") for p in paths)
    assert len(sf.walk(root, limit=3)) == 3
    (root / "a_data").mkdir()
    for i in range(50):
        (root / "a_data" / f"{i}.bin").write_bytes(b"")
    # breadth first: a bound cuts deep entries, never the top level
    assert "real.png" in [e.path for e in sf.walk(root, limit=10)]
    assert [e.path for e in sf.walk(root, prune=lambda e: e.name == "run_1")
            if e.path.startswith("run_1")] == ["run_1"]
    # removing a symlink removes the link itself
    assert sf.remove(root, "fig.png") and sf.remove_tree(root, "run_2")
    assert (outside / "secret.txt").exists() and (outside / "secret.json").exists()
    with pytest.raises(IsADirectoryError):
        sf.remove(root, "run_1")
    assert not sf.remove(root, "nothing")
    # copies: symlinks are not copied, a hard-linked source is refused
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("a")
    (src / "link").symlink_to(outside / "secret.txt")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_text("x")
    n = sf.copy_tree(tmp_path, "src", root, "copy", skip=lambda e: e.name == "__pycache__")
    assert n == 1 and (root / "copy" / "sub" / "a.txt").read_text() == "a"
    assert not (root / "copy" / "link").exists() and not (root / "copy" / "__pycache__").exists()
    os.link(outside / "secret.txt", src / "hard.txt")
    assert refused(sf.copy_file, tmp_path, "src/hard.txt", root, "h.txt") == \
        "src/hard.txt is a hard link: refused"


def test_split_under_picks_the_outermost_folder_that_holds_the_log(tmp_path):
    idea = tmp_path / "idea"
    assert sf.split_under(idea / "logs" / "latex.log", [idea / "latex", idea]) == \
        (idea, "logs/latex.log")
    assert sf.split_under(tmp_path / "x.log", [idea]) == (tmp_path, "x.log")
    assert sf.normalize_rel("latex/../fig.png") == "fig.png"
    assert sf.normalize_rel("latex/../../x") is None and sf.normalize_rel("/x") is None


# -- a race: a folder swapped for a symlink while the engine reads and writes -----------

def test_swapping_a_folder_for_a_symlink_never_leaks_or_writes_outside(root, outside):
    real = root / "real"
    real.mkdir()
    (real / "data.txt").write_text("inside")
    (outside / "data.txt").write_text(SECRET)
    (root / "sym").symlink_to(outside)
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:  # "d" is, in turn: the real folder, nothing, the symlink
        nonlocal swaps
        while not stop.is_set():
            for name in ("real", "sym"):
                try:
                    os.rename(root / name, root / "d")
                    time.sleep(0.0002)  # let the reader meet each state
                    os.rename(root / "d", root / name)
                except OSError:
                    pass
                swaps += 1

    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    seen: dict[str, int] = {}
    naive_leaks = 0
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                got = sf.read_text(root, "d/data.txt")
            except sf.UnsafeFile:
                got = "refused"
            except FileNotFoundError:
                got = "absent"
            seen[got] = seen.get(got, 0) + 1
            try:  # what the engine did before: may follow the symlink
                if (root / "d" / "data.txt").read_text() == SECRET:
                    naive_leaks += 1
            except OSError:
                pass
            try:
                sf.write_text(root, "d/written.txt", "engine")
            except OSError:
                pass
    finally:
        stop.set()
        t.join(5)
    assert SECRET not in seen, seen
    assert seen.get("inside", 0) > 0 and seen.get("refused", 0) > 0, seen  # both states hit
    assert naive_leaks > 0  # the race is real: plain reads did get the outside file
    assert not (outside / "written.txt").exists()
    assert swaps > 100


# -- the engine's readers, given planted links ------------------------------------------

def test_engine_readers_refuse_planted_links(root, outside):
    (root / "run_1" / "final_info.json").unlink()
    (root / "run_1" / "final_info.json").symlink_to(outside / "secret.json")
    with pytest.raises(ValueError, match=r"^run_1/final_info.json is a symlink: refused$"):
        read_final_info(root / "run_1")
    (root / "notes.txt").unlink()
    os.link(outside / "secret.txt", root / "notes.txt")
    assert SECRET not in notes(root) and "hard link: refused" in notes(root)
    (root / "experiment.py").symlink_to(outside / "secret.txt")
    (root / "logs").symlink_to(outside)
    facts = load_run_facts(root)
    assert facts.runs[0].final_info is None and not any("0.4242" in repr(f) for f in facts.facts)
    (root / "leak.png").symlink_to(outside / "secret.txt")
    assert figures(root) == []
    assert lab_data.read_json(root / "run_1" / "final_info.json", root) is None
    assert lab_data.figures(root) == []
    # the paper's own paths: a bibliography or figure outside the idea folder is not read
    latex = root / "latex"
    latex.mkdir()
    (outside / "refs.bib").write_text("@article{stolen2020, title={x}}\n")
    assert bib_keys(latex, "\\bibliography{../../outside/refs}") == set()
    assert find_graphic("../../outside/secret.txt", [latex]) is None
    (root / "fig.png").write_bytes(b"png")
    assert find_graphic("../fig.png", [latex]) == root / "fig.png"


def test_edit_tools_neither_read_nor_write_through_links(root, outside):
    (root / "experiment.py").symlink_to(outside / "secret.txt")
    os.link(outside / "bashrc", root / "helper.py")
    (root / "pkg").symlink_to(outside)
    tools = EditTools.for_stage(root, "experiment")

    def call(name: str, **args: object) -> str:
        return tools.call(ToolCall("1", name, dict(args))).content

    assert call("view_file", path="experiment.py") == \
        "error: experiment.py is a symlink: refused"
    assert call("view_file", path="helper.py") == "error: helper.py is a hard link: refused"
    assert call("replace_text", path="helper.py", old_text="#", new_text="x") == \
        "error: helper.py is a hard link: refused"
    assert call("create_file", path="pkg/mod.py", content="x") == \
        "error: pkg is a symlink: refused"
    listing = call("list_files")
    assert "experiment.py  (a symlink, not usable)" in listing and "pkg/" not in listing
    assert (outside / "bashrc").read_text() == "# host rc file\n"
    assert not (outside / "mod.py").exists()
    assert not any(SECRET in r for r in (listing,))


# -- end to end: the experiment stage with hostile experiments --------------------------

def _cassette(tmp_path: Path, scripts: dict[int, str | None]) -> Path:
    """Plan one run; attempt a of run 1 writes ``scripts[a]`` as experiment.py (None: no
    edit, the previous code runs again)."""
    responses: list[dict] = [{"match": "experiment/faster_lr/plan/turn-1",
                              "text": "Plan:\nRun 1: a hostile experiment"}]
    for a, script in scripts.items():
        step = f"experiment/faster_lr/run-1/attempt-{a}"
        calls = [] if script is None else [{"name": "create_file", "arguments": {
            "path": "experiment.py", "content": script, "overwrite": True}}]
        responses.append({"match": f"{step}/turn-1", "text": "Editing.", "tool_calls": calls})
        responses.append({"match": f"{step}/turn-2", "text": "Ready."})
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps({"responses": responses}))
    return path


_HEADER = ("import argparse, json, os, sys\n"
           "p = argparse.ArgumentParser(); p.add_argument('--out_dir'); a = p.parse_args()\n"
           "os.makedirs(a.out_dir, exist_ok=True)\n")


async def test_planted_final_info_symlink_is_a_per_run_reason_and_leaks_nothing(
        lab, outside, tmp_path):
    plant = _HEADER + (f"os.symlink({str(outside / 'secret.json')!r}, "
                       "os.path.join(a.out_dir, 'final_info.json'))\nprint('planted')\n")
    provider = FlakyProvider(_cassette(tmp_path, {1: plant, 2: None}))
    ctx = make_ctx(lab, provider, **{"experiment.max_runs": 1, "experiment.max_attempts": 2})
    idea_id = add_idea(ctx)
    out = await run_experiments(ctx, idea_id)
    reason = "exit code 0 but run_1/final_info.json is a symlink: refused"
    assert not out.ok and out.reason == f"run_1 failed after 2 attempt(s): {reason}"
    rows = [r for r in ctx.store.runs(idea_id) if r.kind == "experiment"]
    assert [(r.status, r.reason) for r in rows] == [("failed", reason)] * 2
    # the model was told why, and never saw the secret
    sent = json.dumps([[m.text for m in req.messages] + [str(req.system)]
                       for _, req in provider.inner.requests])
    assert reason in sent and SECRET not in sent and "0.4242" not in sent
    ctx.store.close()
    # nothing the engine stored holds it: the store, every regular file of the lab, git
    for p in lab.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert SECRET.encode() not in p.read_bytes(), p
    ws = IdeaWorkspace.open(ctx.idea_dir(idea_id))
    assert SECRET not in ws.git.log("-p", "--all", "--no-ext-diff", "--no-textconv")


async def test_planted_log_and_run_env_links_leave_the_host_files_unchanged(
        lab, outside, tmp_path):
    host_log, host_env = outside / "bashrc", outside / "secret.txt"
    attempt1 = _HEADER + (  # replaces the engine's open log with a link, then fails
        "os.remove('logs/run_1.log')\n"
        f"os.symlink({str(host_log)!r}, 'logs/run_1.log')\nsys.exit(1)\n")
    attempt2 = _HEADER + (  # a good result, and a link where the engine writes run_env.json
        "json.dump({'toy': {'means': {'final_loss': 0.5}}}, "
        "open(os.path.join(a.out_dir, 'final_info.json'), 'w'))\n"
        f"os.symlink({str(host_env)!r}, os.path.join(a.out_dir, 'run_env.json'))\n")
    provider = FlakyProvider(_cassette(tmp_path, {1: attempt1, 2: attempt2}))
    ctx = make_ctx(lab, provider, **{"experiment.max_runs": 1, "experiment.max_attempts": 2})
    idea_id = add_idea(ctx)
    out = await run_experiments(ctx, idea_id)
    assert out.ok and out.runs == [1], out
    assert host_log.read_text() == "# host rc file\n"
    assert host_env.read_text() == SECRET + "\n"
    idea = ctx.idea_dir(idea_id)
    log = idea / "logs" / "run_1.log"
    assert not log.is_symlink() and os.stat(log).st_nlink == 1
    assert "attempt 2" in log.read_text()
    env_file = idea / "run_1" / "run_env.json"
    assert not env_file.is_symlink() and json.loads(env_file.read_text())["python"]
    ctx.store.close()


def test_tui_media_and_log_views_follow_the_same_rule(root, outside, tmp_path):
    doc = pymupdf.open()
    doc.new_page(width=100, height=60).insert_text((10, 30), "fig")
    doc[0].get_pixmap().save(root / "fig.png")
    (root / "latex").mkdir()
    doc.save(root / "latex" / "draft-1.pdf")
    (root / "latex" / "draft-2.pdf").symlink_to(outside / "secret.txt")
    (root / "leak.png").symlink_to(outside / "secret.txt")
    assert lab_data.figures(root) == [root / "fig.png"]
    assert lab_data.newest_draft(root) == root / "latex" / "draft-1.pdf"
    assert load_figure(root, "fig.png").size == (100, 60)
    assert refused(load_figure, root, "leak.png") == "leak.png is a symlink: refused"
    assert page_count(root, "latex/draft-1.pdf") == 1
    assert render_page(root, "latex/draft-1.pdf", 0, tmp_path / "cache").is_file()
    assert refused(page_count, root, "latex/draft-2.pdf") == \
        "latex/draft-2.pdf is a symlink: refused"
    # the log view: a FIFO or a symlink in the log's place shows nothing (and never hangs)
    (root / "logs").mkdir()
    os.mkfifo(root / "logs" / "run_1.log")
    (root / "logs" / "run_2.log").symlink_to(outside / "secret.txt")
    (root / "logs" / "run_3.log").write_text("line 1\nline 2\n")
    for name, lines in (("run_1.log", []), ("run_2.log", []), ("run_3.log", ["line 1", "line 2"])):
        index = LineIndex(root / "logs" / name)
        index.scan()
        assert index.get_lines(0, 10) == lines
