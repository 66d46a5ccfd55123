"""The LLM's edit tools: confined paths, per-stage writable files, precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from aisci.engine.agent.edit_tools import EditTools
from aisci.engine.llm.base import ToolCall


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "idea"
    root.mkdir()
    (root / "experiment.py").write_text("lr = 0.1\nsteps = 10\n\ndef f():\n    return 1\n\n"
                                        "def g():\n    return 1\n")
    (root / "plot.py").write_text("labels = {}\n")
    (root / "notes.txt").write_text("# notes\n")
    (root / "causality_check.py").write_text("print('ok')\n")
    (root / "latex").mkdir()
    (root / "latex" / "template.tex").write_text("\\section{Intro}\n")
    (tmp_path / "secret.txt").write_text("outside")
    return root


def call(tools: EditTools, name: str, **args) -> tuple[str, bool]:
    res = tools.call(ToolCall("c1", name, args))
    assert res.tool_call_id == "c1"
    return res.content, res.is_error


def test_replace_exact_unique_text(project):
    tools = EditTools.for_stage(project, "experiment")
    out, err = call(tools, "replace_text", path="experiment.py", old_text="lr = 0.1",
                    new_text="lr = 0.3")
    assert not err and "replaced 1 line(s) at line 1" in out
    assert (project / "experiment.py").read_text().startswith("lr = 0.3\n")
    assert tools.changed == {"experiment.py"}


def test_replace_not_found_is_precise(project):
    tools = EditTools.for_stage(project, "experiment")
    out, err = call(tools, "replace_text", path="experiment.py", old_text="lr = 0.2",
                    new_text="x")
    assert err and out == "error: experiment.py: old_text not found"
    # the first line exists but the span does not: the hint names the line
    out, err = call(tools, "replace_text", path="experiment.py",
                    old_text="steps = 10\ndef f():", new_text="x")
    assert err and "old_text not found" in out and "line(s) [2]" in out
    assert (project / "experiment.py").read_text().startswith("lr = 0.1")


def test_replace_not_unique_names_lines(project):
    tools = EditTools.for_stage(project, "experiment")
    out, err = call(tools, "replace_text", path="experiment.py", old_text="    return 1",
                    new_text="    return 2")
    assert err and "occurs 2 times (lines [5, 8])" in out and "more surrounding text" in out
    assert tools.changed == set()


@pytest.mark.parametrize("stage, path, reason", [
    ("experiment", "plot.py", "this stage may not modify it"),
    ("experiment", "causality_check.py", "this stage may not modify it"),
    ("experiment", "latex/template.tex", "this stage may not modify it"),
    ("plot", "experiment.py", "this stage may not modify it"),
    ("write", "experiment.py", "this stage may not modify it"),
    ("experiment", "../secret.txt", "without '..'"),
    ("experiment", "/etc/passwd", "relative to the project folder"),
    ("experiment", ".git/config", "managed by the engine"),
])
def test_writes_outside_the_stage_files_are_refused(project, stage, path, reason):
    tools = EditTools.for_stage(project, stage)
    out, err = call(tools, "create_file", path=path, content="x", overwrite=True)
    assert err and reason in out
    out, err = call(tools, "replace_text", path=path, old_text="a", new_text="b")
    assert err and reason in out
    assert (project.parent / "secret.txt").read_text() == "outside"
    assert tools.changed == set()


def test_symlink_escape_is_refused(project):
    (project / "link.py").symlink_to(project.parent / "secret.txt")
    tools = EditTools.for_stage(project, "experiment")
    out, err = call(tools, "create_file", path="link.py", content="x", overwrite=True)
    assert err and "link.py is a symlink: refused" in out
    assert (project.parent / "secret.txt").read_text() == "outside"


def test_stage_allowed_files(project):
    exp = EditTools.for_stage(project, "experiment")
    assert exp.writable("experiment.py") and exp.writable("notes.txt")
    assert exp.writable("helpers.py")  # new helper modules
    plot = EditTools.for_stage(project, "plot")
    assert plot.writable("plot.py") and plot.writable("notes.txt")
    assert not plot.writable("helpers.py")
    write = EditTools.for_stage(project, "write")
    assert write.writable("latex/template.tex") and not write.writable("notes.txt")


def test_create_view_and_list(project):
    tools = EditTools.for_stage(project, "experiment")
    out, err = call(tools, "create_file", path="models.py", content="A = 1\nB = 2\n")
    assert not err and (project / "models.py").read_text() == "A = 1\nB = 2\n"
    out, err = call(tools, "create_file", path="models.py", content="x")
    assert err and "already exists" in out
    out, err = call(tools, "view_file", path="experiment.py", start_line=2, end_line=3)
    assert not err and "(8 lines)" in out and "    2| steps = 10" in out
    assert "    1|" not in out
    out, err = call(tools, "view_file", path="nope.py")
    assert err and "nope.py: no such file" in out
    out, err = call(tools, "list_files")
    assert "experiment.py" in out and "experiment.py" in out.split("(writable)")[0]
    assert "plot.py" in out and "plot.py  12 B\n" in out + "\n"  # listed, not writable
    out, err = call(tools, "replace_text", path="experiment.py")
    assert err and "bad arguments" in out
    out, err = call(tools, "delete_everything", path="x")
    assert err and "unknown tool" in out


def test_specs_name_the_writable_files(project):
    specs = {s.name: s for s in EditTools.for_stage(project, "plot").specs()}
    assert set(specs) == {"view_file", "replace_text", "create_file", "list_files"}
    assert "plot.py" in specs["replace_text"].description


def test_tex_edit_leaving_unbalanced_braces_is_refused_with_its_line(project):
    tools = EditTools.for_stage(project, "write")
    tex = project / "latex" / "template.tex"
    tex.write_text("\\section{Intro}\n% a comment with { a brace\nBODY \\{ literal \\}\n")
    before = tex.read_text()
    out, err = call(tools, "replace_text", path="latex/template.tex", old_text="BODY",
                    new_text="We study \\emph{grokking.\n\\undefinedmacro{x}")
    assert err and "\n" not in out
    assert out == ("error: latex/template.tex: the edit would leave unbalanced braces (1 '{' "
                   "never closed (the first opened at line 3)); nothing was changed: balance "
                   "the braces in your text and call again")
    out, err = call(tools, "create_file", path="latex/template.tex", overwrite=True,
                    content="\\section{Intro}}\n")
    assert err and "a '}' at line 1 closes no '{'" in out
    assert tex.read_text() == before and tools.changed == set()
    # Balanced edits (escaped braces and comments aside) go through.
    out, err = call(tools, "replace_text", path="latex/template.tex", old_text="BODY",
                    new_text="We study \\emph{grokking} 50\\% {of the time} % }")
    assert not err, out
    # A file that is unbalanced already may be edited (the edit may be its repair), and
    # files other than .tex are not checked.
    tex.write_text("\\section{Intro\n")
    out, err = call(tools, "replace_text", path="latex/template.tex", old_text="{Intro",
                    new_text="{Introduction}")
    assert not err and tex.read_text() == "\\section{Introduction}\n"
    out, err = call(EditTools.for_stage(project, "plot"), "replace_text", path="plot.py",
                    old_text="labels = {}", new_text="labels = {")
    assert not err
