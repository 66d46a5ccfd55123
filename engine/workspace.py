"""One git repository per idea: ``<lab>/ideas/<id>-<name>/``, created from the template.

History of an idea repository (plain git, so users can inspect it with git tools):

- ``base`` (tag): the template files, the baseline ``run_0/`` and the first notes.txt;
- ``run_<i>: <plan item>``: the code edit of run i, committed before the run starts;
  when the run succeeds its results (``run_<i>/``, ``logs/run_<i>.log``) are folded into
  that same commit and it is tagged ``run_<i>``;
- ``run_<i> attempt <a> (failed: <reason>)``: a failed attempt keeps its edit and log in
  its own commit, so nothing the model wrote is lost;
- ``plot: ...`` (tag ``plot``) with the figures, ``notes: ...`` for notes-only changes.

The engine is the only writer of this repository; the model edits files through the edit
tools and never runs git. Files larger than :data:`MAX_COMMIT_BYTES` (datasets,
checkpoints) are appended to ``.gitignore`` instead of being committed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import git
from aisci.engine.store import IdeaRow

MAX_COMMIT_BYTES = 5 * 1024 * 1024
#: Results and logs; excluded from the code diffs shown for a run.
RESULT_PATHSPECS = (":(exclude,glob)run_*/**", ":(exclude,glob)logs/**")
GITIGNORE = """\
# written by aisci: caches and large binary outputs never go into history
__pycache__/
*.pyc
.ipynb_checkpoints/
*.pt
*.pth
*.ckpt
*.safetensors
*.bin
"""
_COPY_IGNORE = shutil.ignore_patterns("run_*", "logs", "__pycache__", "*.pyc", ".git",
                                      "draft-*.pdf")


class WorkspaceError(RuntimeError):
    """A workspace operation that cannot be carried out (message names the idea dir)."""


def idea_dir_for(lab: Path, idea: IdeaRow) -> Path:
    return Path(lab) / "ideas" / f"{idea.id}-{idea.name}"


def read_final_info(run_dir: Path) -> dict[str, Any]:
    """The ``final_info.json`` of a run folder, validated against the template contract:
    an object keyed by dataset whose values hold a ``means`` object of numbers. Raises
    ValueError with a one-line reason otherwise."""
    path = Path(run_dir) / "final_info.json"
    if not path.is_file():
        raise ValueError(f"{path.parent.name}/final_info.json was not written")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.parent.name}/final_info.json is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path.parent.name}/final_info.json: expected a non-empty object "
                         "keyed by dataset")
    for key, value in data.items():
        means = value.get("means") if isinstance(value, dict) else None
        if isinstance(means, int | float) and not isinstance(means, bool):
            # Some reference-system templates write one bare number per dataset.
            value["means"] = means = {"value": means}
        if not isinstance(means, dict) or not means:
            raise ValueError(f"{path.parent.name}/final_info.json: {key!r} has no 'means' "
                             "object of metrics")
        for metric, number in means.items():
            if not isinstance(number, int | float) or isinstance(number, bool):
                raise ValueError(f"{path.parent.name}/final_info.json: {key}.means.{metric} "
                                 f"is {number!r}, expected a number")
    return data


def means_of(final_info: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {k: dict(v["means"]) for k, v in final_info.items()}


def format_results(final_info: dict[str, Any], baseline: dict[str, Any] | None = None,
                   lower_is_better: list[str] | None = None,
                   higher_is_better: list[str] | None = None) -> str:
    """Means per dataset, each with its change against the baseline when known; the
    direction (better/worse) is stated only for metrics the template declares."""
    lower, higher = set(lower_is_better or []), set(higher_is_better or [])
    lines = []
    for ds, means in means_of(final_info).items():
        base = means_of(baseline).get(ds, {}) if baseline else {}
        parts = []
        for metric, value in means.items():
            text = f"{metric}={value:.6g}"
            ref = base.get(metric)
            if isinstance(ref, int | float):
                delta = value - ref
                verdict = ""
                if delta and (metric in lower or metric in higher):
                    better = (delta < 0) == (metric in lower)
                    verdict = ", better" if better else ", worse"
                text += f" (baseline {ref:.6g}, {delta:+.4g}{verdict})"
            parts.append(text)
        lines.append(f"{ds}: " + "; ".join(parts))
    return "\n".join(lines)


class IdeaWorkspace:
    """The git repository of one idea. Construct with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.repo = git.Repo(self.path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise WorkspaceError(f"{self.path}: not an idea workspace (no git repository)") \
                from None

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path) -> IdeaWorkspace:
        return cls(path)

    @classmethod
    def create(cls, ctx_or_lab: Any, idea_row: IdeaRow, template: Any, smoke: bool,
               baseline: Path | None = None) -> IdeaWorkspace:
        """Copy the template into ``ideas/<id>-<name>/``, initialise git and commit the
        base (tag ``base``). Idempotent: an existing workspace is returned as it is.

        ``baseline`` is the folder holding the baseline ``final_info.json``; by default
        ``templates.baseline_dir(lab, template.name, smoke)`` when it has one."""
        lab = Path(getattr(ctx_or_lab, "lab", ctx_or_lab))
        path = idea_dir_for(lab, idea_row)
        if (path / ".git").is_dir():
            ws = cls(path)
            if "base" in ws.tags():
                return ws
        else:
            if path.exists():
                # A crash between copying and the first commit: start over cleanly.
                shutil.rmtree(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(Path(template.path), path, ignore=_COPY_IGNORE, symlinks=True)
            repo = git.Repo.init(path, initial_branch="main")
            with repo.config_writer() as cw:
                cw.set_value("user", "name", "aisci")
                cw.set_value("user", "email", "aisci@localhost")
                cw.set_value("commit", "gpgsign", "false")
                cw.set_value("core", "hooksPath", "/dev/null")
            ws = cls(path)
        if baseline is None:
            from aisci.engine.templates import baseline_dir
            baseline = baseline_dir(lab, template.name, smoke)
        base_info = None
        if (Path(baseline) / "final_info.json").is_file():
            ws._install_baseline(Path(baseline))
            base_info = read_final_info(path / "run_0")
        gi = path / ".gitignore"
        existing = gi.read_text(encoding="utf-8") if gi.exists() else ""
        if "written by aisci" not in existing:
            gi.write_text(GITIGNORE + existing, encoding="utf-8")
        (path / "notes.txt").write_text(
            initial_notes(idea_row, base_info, getattr(template, "lower_is_better", []),
                          getattr(template, "higher_is_better", [])), encoding="utf-8")
        ws.commit(f"base: template {template.name}" + (" with baseline run_0" if base_info
                                                          else " (no baseline yet)"))
        ws.tag("base")
        return ws

    def _install_baseline(self, src: Path) -> None:
        dst = self.path / "run_0"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))

    def add_baseline(self, src: Path, idea_row: IdeaRow, template: Any) -> None:
        """Install a baseline produced after the workspace was created; ``base`` moves to
        the commit that adds it, so run_1's diff starts from the baseline."""
        if (self.path / "run_0" / "final_info.json").is_file():
            return
        self._install_baseline(Path(src))
        info = read_final_info(self.path / "run_0")
        (self.path / "notes.txt").write_text(
            initial_notes(idea_row, info, getattr(template, "lower_is_better", []),
                          getattr(template, "higher_is_better", [])), encoding="utf-8")
        self.commit("run_0: baseline results")
        self.tag("base", force=True)

    # -- git primitives --------------------------------------------------------------------
    def tags(self) -> set[str]:
        return {t.name for t in self.repo.tags}

    def tag(self, name: str, force: bool = False) -> None:
        self.repo.create_tag(name, force=force)

    def head_sha(self) -> str | None:
        try:
            return self.repo.head.commit.hexsha
        except ValueError:  # no commit yet
            return None

    def head_message(self) -> str:
        sha = self.head_sha()
        return str(self.repo.head.commit.message).strip() if sha else ""

    def _exclude_large_files(self) -> list[str]:
        """Append files above the size cap to .gitignore (by exact path); a tracked file
        that grew past it (a log over many attempts) stops being tracked from now on."""
        big = []
        modified = self.repo.git.diff("--name-only").splitlines() if self.head_sha() else []
        for rel in [*self.repo.untracked_files, *modified]:
            p = self.path / rel
            try:
                if p.is_file() and p.stat().st_size > MAX_COMMIT_BYTES:
                    big.append(rel)
            except OSError:
                continue
        for rel in set(big) & set(modified):
            self.repo.git.rm("--cached", "-q", "--", rel)
        if big:
            with (self.path / ".gitignore").open("a", encoding="utf-8") as fh:
                for rel in big:
                    fh.write("/" + rel.replace(" ", "\\ ") + "\n")
        return big

    def dirty(self) -> bool:
        return self.repo.is_dirty(untracked_files=True)

    def commit(self, message: str, *, amend: bool = False, allow_empty: bool = True) -> str:
        """Stage everything (minus ignored and oversized files) and commit."""
        self._exclude_large_files()
        self.repo.git.add("-A")
        args = ["-q", "-m", message, "--no-verify"]
        if amend:
            args.append("--amend")
        if allow_empty:
            args.append("--allow-empty")
        self.repo.git.commit(*args)
        sha = self.head_sha()
        assert sha is not None
        return sha

    def commit_notes(self, message: str = "notes: update") -> str | None:
        """Commit notes.txt when it changed; None when there was nothing to commit."""
        if not self.repo.is_dirty(path="notes.txt") and "notes.txt" not in \
                self.repo.untracked_files:
            return None
        self.repo.git.add("notes.txt")
        self.repo.git.commit("-q", "-m", message, "--no-verify")
        return self.head_sha()

    def restore_to(self, ref: str) -> None:
        """Make the working tree equal to ``ref`` without rewriting history: files changed
        since are restored, files added since are removed (the next commit records it)."""
        added = self.repo.git.diff("--name-only", "--diff-filter=A", ref, "--").splitlines()
        untracked = list(self.repo.untracked_files)
        for rel in added + untracked:
            p = self.path / rel
            if p.is_file() or p.is_symlink():
                p.unlink()
        self.repo.git.checkout(ref, "--", ".")

    # -- runs ------------------------------------------------------------------------------
    def finished_runs(self) -> list[int]:
        """Experiment runs that succeeded (tagged ``run_<i>``, i >= 1), ascending."""
        out = []
        for name in self.tags():
            if name.startswith("run_") and name[4:].isdigit() and int(name[4:]) >= 1:
                out.append(int(name[4:]))
        return sorted(out)

    def run_ref(self, i: int) -> str:
        if i <= 0:
            return "base"
        if f"run_{i}" not in self.tags():
            raise WorkspaceError(f"{self.path.name}: run_{i} has not finished (no tag run_{i})")
        return f"run_{i}"

    def _prev_ref(self, i: int) -> str:
        """The run before i that finished (runs are sequential, so normally i-1)."""
        earlier = [r for r in self.finished_runs() if r < i]
        return self.run_ref(earlier[-1]) if earlier else "base"

    def run_diff(self, i: int, code_only: bool = True) -> str:
        """``git diff run_{i-1}..run_i`` (run_0 = base); without results and logs unless
        ``code_only`` is False."""
        if i <= 0:
            return ""
        spec = RESULT_PATHSPECS if code_only else ()
        return str(self.repo.git.diff(self._prev_ref(i), self.run_ref(i), "--", ".", *spec))

    def run_files(self, i: int, code_only: bool = True) -> dict[str, tuple[str | None, str | None]]:
        """For every file changed by run i: (text before, text after); None = absent."""
        if i <= 0:
            return {}
        before, after = self._prev_ref(i), self.run_ref(i)
        spec = RESULT_PATHSPECS if code_only else ()
        names = self.repo.git.diff("--name-only", before, after, "--", ".", *spec).splitlines()
        return {n: (self.file_at(before, n), self.file_at(after, n)) for n in names if n}

    def file_at(self, ref: str, rel: str) -> str | None:
        try:
            blob = self.repo.commit(ref).tree / rel
        except KeyError:
            return None
        return blob.data_stream.read().decode("utf-8", errors="replace")

    def log(self, limit: int = 200) -> list[tuple[str, str]]:
        """(sha, subject) newest first, bounded."""
        return [(c.hexsha, str(c.summary)) for c in self.repo.iter_commits(max_count=limit)]


def initial_notes(idea: IdeaRow, baseline: dict[str, Any] | None,
                  lower: list[str], higher: list[str]) -> str:
    title = idea.data.get("Title", idea.name)
    experiment = idea.data.get("Experiment", "")
    results = format_results(baseline, None, lower, higher) if baseline else "(not available)"
    return (f"# Title: {title}\n# Experiment description: {experiment}\n\n"
            f"## Run 0: Baseline\nResults:\n{results}\n"
            "Description: the unmodified template (baseline).\n")
