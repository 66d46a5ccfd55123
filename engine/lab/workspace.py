"""One git repository per idea: the working tree ``<lab>/ideas/<id>-<name>/``, created
from the template, and its git directory ``<lab>/repos/<id>-<name>.git``.

The git directory lives outside the idea folder on purpose: everything an experiment can
write is hostile, and a ``.git`` inside the folder would let it plant hooks, an
``fsmonitor`` command or filters that the engine's next ``git add`` runs on the host.
The engine writes the repository's configuration itself and runs every git command with
a pinned environment (:func:`git_environment`): no system or global configuration, no
hooks, no fsmonitor, no pager, no external diff or textconv, nested repositories left
out; a ``.git`` the experiment plants in its folder is never looked at.

Users inspect the history with plain git, from the lab::

    git -C repos/3-foo.git log --oneline
    git -C repos/3-foo.git diff run_1 run_2
    git --git-dir=repos/3-foo.git --work-tree=ideas/3-foo status

History of an idea repository:

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

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import git
from aisci.engine.errors import AisciError
from aisci.engine.lab import layout, safe_files
from aisci.engine.lab.secret_names import is_secret_name
from aisci.engine.lab.store import IdeaRow

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
#: Bound on the entries scanned for nested repositories before a commit (a nested
#: repository past it is still kept out: see :meth:`IdeaWorkspace._unstage_gitlinks`).
_MAX_SCAN_ENTRIES = 200_000
#: Paths given to one ``git update-index`` command (bounds its argument list).
_PATHS_PER_COMMAND = 500
#: git's file mode of a gitlink (an embedded repository recorded as a submodule).
_GITLINK_MODE = b"160000"
#: Configuration every engine git command runs with, above the repository's own
#: configuration (which only the engine writes); system and global files are not read.
PINNED_GIT_CONFIG = (
    ("core.hooksPath", os.devnull),
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("core.pager", "cat"),
    ("core.attributesFile", os.devnull),
    ("core.excludesFile", os.devnull),
    ("core.askPass", ""),
    ("core.sshCommand", "false"),
    ("core.symlinks", "true"),
    ("core.quotePath", "false"),
    ("diff.external", ""),
    ("diff.ignoreSubmodules", "all"),
    ("status.submoduleSummary", "false"),
    ("submodule.recurse", "false"),
    ("protocol.allow", "never"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("credential.helper", ""),
    ("safe.directory", "*"),
    ("safe.bareRepository", "explicit"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("user.name", "aisci"),
    ("user.email", "aisci@localhost"),
)
#: The repository configuration the engine writes (and rewrites when it adopts a
#: repository from an older lab layout, whose config an experiment could have edited).
_REPO_CONFIG = """\
[core]
\trepositoryformatversion = 0
\tfilemode = true
\tbare = true
\tlogallrefupdates = true
[user]
\tname = aisci
\temail = aisci@localhost
[commit]
\tgpgsign = false
"""
_COPY_IGNORE = shutil.ignore_patterns("run_*", "logs", "__pycache__", "*.pyc", ".git",
                                      "draft-*.pdf")


class WorkspaceError(AisciError):
    """A workspace operation that cannot be carried out (message names the idea dir)."""


def git_environment(git_dir: Path, work_tree: Path | None) -> dict[str, str]:
    """Environment overrides for one engine git command: the repository and working tree
    named explicitly (git never discovers a ``.git`` in the idea folder), the pinned
    configuration, no system/global configuration or attributes, no prompts or pager,
    and every secret-looking or stray ``GIT_*`` variable of the engine blanked (GitPython
    starts from the engine's environment; an empty value is the closest to unset)."""
    env = {name: "" for name in os.environ
           if is_secret_name(name) or name.startswith("GIT_")}
    env.update({
        "GIT_DIR": str(git_dir), "GIT_COMMON_DIR": str(git_dir),
        "GIT_INDEX_FILE": str(Path(git_dir) / "index"),
        "GIT_OBJECT_DIRECTORY": str(Path(git_dir) / "objects"),
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat",
        "PAGER": "cat", "GIT_OPTIONAL_LOCKS": "0", "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_CONFIG_COUNT": str(len(PINNED_GIT_CONFIG)),
    })
    if work_tree is not None:
        env["GIT_WORK_TREE"] = str(work_tree)
    for i, (key, value) in enumerate(PINNED_GIT_CONFIG):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _init_git_dir(git_dir: Path) -> None:
    """A fresh repository at ``git_dir`` with the engine's configuration."""
    git_dir.parent.mkdir(parents=True, exist_ok=True)
    g = git.Git(str(git_dir.parent))
    g.update_environment(**{k: v for k, v in git_environment(git_dir, None).items()
                            if k not in ("GIT_DIR", "GIT_COMMON_DIR", "GIT_INDEX_FILE",
                                         "GIT_OBJECT_DIRECTORY")})
    g.execute(["git", "init", "-q", "--bare", "--initial-branch=main", str(git_dir)])
    _pin_git_dir(git_dir)


def _pin_git_dir(git_dir: Path) -> None:
    """Rewrite what in a git directory could run or redirect commands: its config,
    hooks, attributes and alternates (used when adopting a repository whose directory
    sat inside the idea folder, where an experiment could write it)."""
    (git_dir / "config").write_text(_REPO_CONFIG, encoding="utf-8")
    hooks = git_dir / "hooks"
    if hooks.is_symlink() or hooks.is_file():
        hooks.unlink()
    elif hooks.is_dir():
        shutil.rmtree(hooks)
    for rel in ("info/attributes", "objects/info/alternates", "info/grafts", "shallow",
                "commondir", "gitdir"):
        p = git_dir / rel
        if p.is_symlink() or p.exists():
            p.unlink()
    (git_dir / "info").mkdir(exist_ok=True)


def adopt_legacy_git_dir(idea_dir: Path) -> bool:
    """Labs made before the git directory moved out kept it at ``<idea>/.git``: move it
    to :func:`layout.git_dir` and re-pin it. True when something was adopted."""
    old, new = Path(idea_dir) / ".git", layout.git_dir(idea_dir)
    if new.exists() or old.is_symlink() or not old.is_dir():
        return False
    try:
        new.parent.mkdir(parents=True, exist_ok=True)
        os.replace(old, new)
    except OSError:  # a read-only lab: left as it is, the workspace is not opened
        return False
    _pin_git_dir(new)
    return True


def has_workspace(idea_dir: Path) -> bool:
    """True when the idea folder has its engine-owned git directory (legacy layouts are
    adopted first)."""
    adopt_legacy_git_dir(idea_dir)
    return (layout.git_dir(idea_dir) / "HEAD").is_file()


def read_final_info(run_dir: Path) -> dict[str, Any]:
    """The ``final_info.json`` of a run folder, validated against the template contract:
    an object keyed by dataset whose values hold a ``means`` object of numbers. Raises
    ValueError with a one-line reason otherwise (safe_files.UnsafeFile, a ValueError,
    when the file or the run folder is a symlink, a hard link, not a regular file or
    larger than safe_files.MAX_JSON_BYTES)."""
    path = Path(run_dir) / "final_info.json"
    try:
        data = safe_files.read_json(path.parent.parent, f"{path.parent.name}/final_info.json")
    except FileNotFoundError:
        raise ValueError(f"{path.parent.name}/final_info.json was not written") from None
    except safe_files.UnsafeFile:
        raise
    except OSError as exc:
        raise ValueError(f"{path.parent.name}/final_info.json cannot be read "
                         f"({exc.strerror or exc})") from None
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
        self.path = Path(path).absolute()
        self.git_dir = layout.git_dir(self.path)
        if not has_workspace(self.path) or not self.path.is_dir():
            raise WorkspaceError(f"{self.path}: not an idea workspace (no git repository at "
                                 f"{self.git_dir})")
        try:
            self.repo = git.Repo(str(self.git_dir))
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise WorkspaceError(f"{self.git_dir}: not a git repository") from None
        # Every command, including GitPython's persistent cat-file processes, runs with
        # the pinned environment; its working directory is the engine-owned git dir.
        self.repo.git.update_environment(**git_environment(self.git_dir, self.path))
        self.git = self.repo.git

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
        ``layout.baseline_dir(lab, template.name, smoke)`` when it has one."""
        lab = Path(getattr(ctx_or_lab, "lab", ctx_or_lab))
        path = layout.idea_dir(lab, idea_row.id, idea_row.name).absolute()
        if has_workspace(path) and path.is_dir():
            ws = cls(path)
            if "base" in ws.tags():
                return ws
        else:
            # A crash between copying and the first commit: start over cleanly.
            if path.is_symlink():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)
            if layout.git_dir(path).exists():
                shutil.rmtree(layout.git_dir(path))
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(Path(template.path), path, ignore=_COPY_IGNORE, symlinks=True)
            _init_git_dir(layout.git_dir(path))
            ws = cls(path)
        if baseline is None:
            baseline = layout.baseline_dir(lab, template.name, smoke)
        base_info = None
        baseline = Path(baseline)
        if safe_files.is_file(baseline.parent, f"{baseline.name}/final_info.json"):
            ws._install_baseline(baseline)
            base_info = read_final_info(path / "run_0")
        try:
            existing = safe_files.read_text(path, ".gitignore")
        except FileNotFoundError:
            existing = ""
        if "written by aisci" not in existing:
            safe_files.write_text(path, ".gitignore", GITIGNORE + existing)
        safe_files.write_text(path, "notes.txt", initial_notes(
            idea_row, base_info, getattr(template, "lower_is_better", []),
            getattr(template, "higher_is_better", []),
            units=getattr(template, "metric_units", {})))
        ws.commit(f"base: template {template.name}" + (" with baseline run_0" if base_info
                                                          else " (no baseline yet)"))
        ws.tag("base")
        return ws

    def _install_baseline(self, src: Path) -> None:
        """Copy the baseline folder to run_0 (no symlink followed on either side)."""
        safe_files.remove_tree(self.path, "run_0")
        safe_files.copy_tree(src.parent, src.name, self.path, "run_0",
                             skip=lambda e: e.name == "__pycache__")

    def add_baseline(self, src: Path, idea_row: IdeaRow, template: Any) -> None:
        """Install a baseline produced after the workspace was created; ``base`` moves to
        the commit that adds it, so run_1's diff starts from the baseline."""
        if safe_files.is_file(self.path, "run_0/final_info.json"):
            return
        self._install_baseline(Path(src))
        info = read_final_info(self.path / "run_0")
        safe_files.write_text(self.path, "notes.txt", initial_notes(
            idea_row, info, getattr(template, "lower_is_better", []),
            getattr(template, "higher_is_better", []),
            units=getattr(template, "metric_units", {})))
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

    def untracked(self) -> list[str]:
        """Untracked, not ignored files (paths relative to the idea folder)."""
        out = self.git.ls_files("--others", "--exclude-standard", "-z")
        return [p for p in out.split("\0") if p]

    def _changed(self, *paths: str) -> list[str]:
        out = self.git.diff("--name-only", "-z", "--no-ext-diff", "--no-textconv",
                            "--ignore-submodules=all", "--", *(paths or (":/",)))
        return [p for p in out.split("\0") if p]

    def _exclude_nested_repos(self) -> list[str]:
        """Folders of the tree holding a ``.git`` of their own (a repository the run
        made or planted) go into the engine-owned ``info/exclude``: git would otherwise
        record them as submodules and later look inside them. Bounded scan, no symlink
        is followed."""
        found: list[str] = []
        seen = 0
        for top, dirs, files in os.walk(self.path):
            seen += len(dirs) + len(files)
            if top != str(self.path) and (".git" in dirs or ".git" in files):
                found.append(os.path.relpath(top, self.path))
                dirs[:] = []
                continue
            dirs[:] = [d for d in dirs if d != ".git"]
            if seen > _MAX_SCAN_ENTRIES:
                break
        self._exclude([f"/{_escape_pattern(rel)}/" for rel in found])
        return found

    def _exclude(self, patterns: list[str]) -> None:
        """Add ignore patterns to the repository's own ``info/exclude`` (in the git
        directory, where no experiment writes; the tree's ``.gitignore`` is the run's)."""
        if not patterns:
            return
        # Bytes as git reads them: a name that is not UTF-8 (surrogate-escaped by os) is
        # written as the bytes it has on disk. A line break would start a rule of its own
        # (patterns come from _escape_pattern, which never leaves one).
        lines = [os.fsencode(p) for p in patterns]
        if any(b"\n" in line or b"\r" in line for line in lines):
            raise WorkspaceError(f"{self.git_dir}: refusing an exclude pattern with a "
                                 "line break")
        exclude = self.git_dir / "info" / "exclude"
        exclude.parent.mkdir(exist_ok=True)
        known = set(exclude.read_bytes().split(b"\n")) if exclude.is_file() else set()
        with exclude.open("ab") as fh:
            for line in lines:
                if line not in known:
                    known.add(line)
                    fh.write(line + b"\n")

    def _exclude_large_files(self) -> list[str]:
        """Exclude files above the size cap from history (by exact path); a tracked file
        that grew past it (a log over many attempts) stops being tracked from now on."""
        big = []
        modified = self._changed() if self.head_sha() else []
        for rel in [*self.untracked(), *modified]:
            try:
                st = os.lstat(self.path / rel)
            except OSError:
                continue
            if st.st_size > MAX_COMMIT_BYTES:
                big.append(rel)
        for rel in set(big) & set(modified):
            self.git.rm("--cached", "-q", "--", f":(literal){rel}")
        self._exclude(["/" + _escape_pattern(rel) for rel in big])
        return big

    def _unstage_gitlinks(self) -> list[str]:
        """Take every gitlink (an embedded repository, mode 160000) out of the index and
        exclude its folder: whatever the bounded scan of :meth:`_exclude_nested_repos`
        missed, a commit never records a repository the run made. The index listing is
        streamed, so only the gitlinks are kept in memory."""
        found: list[str] = []
        proc = self.git.ls_files("--stage", "-z", as_process=True)
        stdout = proc.proc.stdout
        rest = b""
        try:
            while chunk := stdout.read(1 << 16):
                *records, rest = (rest + chunk).split(b"\0")
                for rec in records:  # "<mode> <sha> <stage>\t<path>"
                    if rec.startswith(_GITLINK_MODE + b" "):
                        found.append(os.fsdecode(rec.partition(b"\t")[2]))
        except BaseException:  # git may be blocked writing the rest: end it
            proc.proc.kill()
            proc.proc.wait()
            raise
        proc.wait()  # a failing git raises GitCommandError, as every engine git call
        for start in range(0, len(found), _PATHS_PER_COMMAND):
            # update-index takes literal paths (no pathspec magic), from the tree's top
            self.git.update_index("--force-remove", "--",
                                  *found[start:start + _PATHS_PER_COMMAND])
        self._exclude([f"/{_escape_pattern(rel)}/" for rel in found])
        return found

    def dirty(self) -> bool:
        out = self.git.status("--porcelain", "-z", "--untracked-files=all",
                              "--ignore-submodules=all")
        return bool(out.strip("\0"))

    def commit(self, message: str, *, amend: bool = False, allow_empty: bool = True) -> str:
        """Stage everything (minus ignored and oversized files) and commit."""
        self._exclude_nested_repos()
        self._exclude_large_files()
        self.git.add("-A", "--", ":/")
        self._unstage_gitlinks()
        args = ["-q", "-m", message, "--no-verify"]
        if amend:
            args.append("--amend")
        if allow_empty:
            args.append("--allow-empty")
        self.git.commit(*args)
        sha = self.head_sha()
        assert sha is not None
        return sha

    def commit_notes(self, message: str = "notes: update") -> str | None:
        """Commit notes.txt when it changed; None when there was nothing to commit."""
        if "notes.txt" not in self._changed("notes.txt") and \
                "notes.txt" not in self.untracked():
            return None
        self.git.add("--", ":(literal)notes.txt")
        self.git.commit("-q", "-m", message, "--no-verify")
        return self.head_sha()

    def restore_to(self, ref: str) -> None:
        """Make the working tree equal to ``ref`` without rewriting history: files changed
        since are restored, files added since are removed (the next commit records it)."""
        added = self.git.diff("--name-only", "-z", "--diff-filter=A", "--no-ext-diff", ref,
                              "--", ":/").split("\0")
        for rel in [r for r in added if r] + self.untracked():
            # the entry itself (a symlink is removed, not its target); an entry under a
            # symlinked folder is not reached (the symlink itself is in the list)
            with contextlib.suppress(safe_files.UnsafeFile, IsADirectoryError,
                                     NotADirectoryError):
                safe_files.remove(self.path, rel)
        self.git.checkout(ref, "--", ":/")

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
        return str(self.git.diff("--no-ext-diff", "--no-textconv", self._prev_ref(i),
                                 self.run_ref(i), "--", ":/", *spec))

    def run_files(self, i: int, code_only: bool = True) -> dict[str, tuple[str | None, str | None]]:
        """For every file changed by run i: (text before, text after); None = absent."""
        if i <= 0:
            return {}
        before, after = self._prev_ref(i), self.run_ref(i)
        spec = RESULT_PATHSPECS if code_only else ()
        names = self.git.diff("--name-only", "-z", "--no-ext-diff", before, after, "--", ":/",
                              *spec).split("\0")
        return {n: (self.file_at(before, n), self.file_at(after, n)) for n in names if n}

    def file_at(self, ref: str, rel: str) -> str | None:
        try:
            blob = self.repo.commit(ref).tree / rel
        except KeyError:
            return None
        data: bytes = blob.data_stream.read()
        return data.decode("utf-8", errors="replace")

    def log(self, limit: int = 200) -> list[tuple[str, str]]:
        """(sha, subject) newest first, bounded."""
        return [(c.hexsha, str(c.summary)) for c in self.repo.iter_commits(max_count=limit)]


#: Characters git reads specially in an ignore pattern: escaped with a backslash.
_PATTERN_SPECIAL = frozenset("\\[]*?!# ")


def _escape_pattern(rel: str) -> str:
    """A path (a name the experiment chose) as one gitignore line matching it: the
    characters git reads specially (wildcards, a leading ``!`` or ``#``, trailing spaces,
    backslashes) are escaped; a control character, which cannot be written in a line
    (a line feed would start a rule of its own), becomes ``?`` (one character)."""
    out = []
    for ch in rel:
        if ord(ch) < 0x20 or ch == "\x7f":
            out.append("?")
        elif ch in _PATTERN_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def initial_notes(idea: IdeaRow, baseline: dict[str, Any] | None,
                  lower: list[str], higher: list[str],
                  units: dict[str, str] | None = None) -> str:
    title = idea.data.get("Title", idea.name)
    experiment = idea.data.get("Experiment", "")
    results = format_results(baseline, None, lower, higher) if baseline else "(not available)"
    unit_line = ("# Metric units (template.toml): "
                 + ", ".join(f"{k} [{v}]" for k, v in units.items()) + "\n") if units else ""
    return (f"# Title: {title}\n# Experiment description: {experiment}\n{unit_line}\n"
            f"## Run 0: Baseline\nResults:\n{results}\n"
            "Description: the unmodified template (baseline).\n")
