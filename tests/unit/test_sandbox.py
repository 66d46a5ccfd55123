"""Sandbox building blocks: secret filtering, the child environment, the bubblewrap
command line, isolation probing (no silent fallback), doctor's line, and the pids
cgroup. Confined processes themselves are in test_confine.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from aisci.engine.config import SandboxSettings, Settings
from aisci.engine.doctor import check_isolation
from aisci.engine.lab.secret_names import is_secret_name
from aisci.engine.run import confine
from aisci.engine.run.sandbox import (
    NONE_WARNING,
    UNAVAILABLE,
    BwrapLayout,
    PidsCgroup,
    bwrap_argv,
    child_environment,
    isolation_warning,
    probe_isolation,
)


@pytest.mark.parametrize("name", ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL",
                                  "AWS_ACCESS_KEY_ID", "HF_TOKEN", "GITHUB_TOKEN",
                                  "S2_API_KEY", "MY_PASSWORD", "db_secret", "SSH_AUTH_SOCK",
                                  "AZURE_OPENAI_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS"])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["PATH", "LANG", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                                  "AISCI_SMOKE", "TZ"])
def test_plain_names(name):
    assert not is_secret_name(name)


def test_child_environment_allowlist_and_extra_env():
    parent = {"PATH": "/usr/bin", "LC_ALL": "C", "SHELL": "/bin/zsh", "USER": "me",
              "ANTHROPIC_API_KEY": "sk", "DATASET_ROOT": "/data", "OPENAI_API_KEY": "sk",
              "HOME": "/root", "CUDA_VISIBLE_DEVICES": "0"}
    s = SandboxSettings(extra_env=["DATASET_ROOT", "OPENAI_API_KEY"])
    env = child_environment(s, home="/tmp/h", tmpdir="/tmp/h/t", parent=parent,
                            extra={"AISCI_SMOKE": "1", "HF_TOKEN": "x",
                                   "CUDA_VISIBLE_DEVICES": ""})
    assert env["DATASET_ROOT"] == "/data" and env["LC_ALL"] == "C"
    assert env["HOME"] == "/tmp/h" and env["TMPDIR"] == "/tmp/h/t"
    assert env["AISCI_SMOKE"] == "1" and env["CUDA_VISIBLE_DEVICES"] == ""
    for gone in ("SHELL", "USER", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "HF_TOKEN"):
        assert gone not in env


def test_bwrap_argv_layout(tmp_path):
    idea = tmp_path / "idea"
    data = tmp_path / "data"
    idea.mkdir()
    data.mkdir()
    home = tmp_path / "home"
    (home / "venv").mkdir(parents=True)
    argv = bwrap_argv("bwrap", BwrapLayout(cwd=idea, writable=[data],
                                           visible=[home / "venv"]),
                      [sys.executable, "experiment.py"], home=str(home))
    joined = " ".join(argv)
    assert argv[:5] == ["bwrap", "--ro-bind", "/", "/", "--dev"]
    assert f"--tmpfs {home}" in joined and f"--ro-bind-try {home / 'venv'}" in joined
    assert joined.index(f"--tmpfs {home}") < joined.index(f"--ro-bind-try {home / 'venv'}")
    assert f"--bind {idea} {idea}" in joined and f"--bind {data} {data}" in joined
    assert "--unshare-net" in argv and "--unshare-pid" in argv and "--die-with-parent" in argv
    assert argv[-3:] == ["--", sys.executable, "experiment.py"]
    net = bwrap_argv("bwrap", BwrapLayout(cwd=idea, network=True), ["x"], home=str(home))
    assert "--unshare-net" not in net


def test_probe_levels():
    assert probe_isolation(SandboxSettings(mode="none"))[0] == "none"
    level, detail = probe_isolation(SandboxSettings(mode="landlock"))
    if confine.landlock_abi()[0]:
        assert level == "landlock" and detail.startswith("Landlock ABI")
        assert "bubblewrap not tried (sandbox.mode = landlock)" in detail
    else:  # no silent fallback: the explicit mode is refused, naming why
        assert level == UNAVAILABLE and "Landlock is unusable" in detail
    assert probe_isolation(SandboxSettings())[0] in ("bwrap", "landlock", UNAVAILABLE)


def test_doctor_reports_the_probe_and_warns_without_isolation():
    s = Settings()
    level, _ = probe_isolation(s.sandbox)
    check = check_isolation(s)
    if level == UNAVAILABLE:  # neither bubblewrap nor Landlock here: refused, not hidden
        assert check.status == "fail" and isolation_warning(s.sandbox)
    else:
        assert check.detail.startswith(level) and check.status == "ok"
        assert isolation_warning(s.sandbox) is None
    s.sandbox.mode = "none"
    check = check_isolation(s)
    assert check.status == "warn" and "WITHOUT isolation (sandbox.mode = none)" in check.detail
    assert isolation_warning(s.sandbox) == NONE_WARNING
    s.sandbox.require_isolation = True
    assert check_isolation(s).status == "fail"


def test_bwrap_hides_the_lab_but_shows_the_idea_and_a_venv_inside(tmp_path):
    lab = tmp_path / "lab"
    idea = lab / "ideas" / "1-x"
    venv = lab / ".venv"
    idea.mkdir(parents=True)
    venv.mkdir()
    args = bwrap_argv("bwrap", BwrapLayout(cwd=idea, visible=[venv], hidden=[lab]),
                      ["python"], home=str(tmp_path / "home"))
    joined = " ".join(args)
    hide = joined.index(f"--tmpfs {lab} ")
    assert hide < joined.index(f"--bind {idea} {idea}")
    assert hide < joined.index(f"--ro-bind-try {venv} {venv}")
    private = confine.split_tree("/etc")[1]
    for path in private:  # what only root may read stays hidden from a root engine's child
        assert str(path) in args
    if Path("/run").is_dir() and not Path("/run").is_symlink():  # host service sockets
        assert "--tmpfs /run " in joined and "--remount-ro /run " in joined


@pytest.mark.skipif(PidsCgroup.root() is None, reason="no writable pids cgroup")
def test_pids_cgroup_lifecycle():
    cg = PidsCgroup.create(7)
    assert cg is not None
    try:
        assert (cg.path / "pids.max").read_text().strip() == "7"
        assert cg.pids() == [] and not cg.limit_hit()
    finally:
        cg.remove()
    assert not Path(cg.path).exists()


def test_no_secret_reaches_the_engine_children_via_extra_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    env = child_environment(SandboxSettings(extra_env=["OPENAI_API_KEY"]), home="/h",
                            tmpdir="/t")
    assert "OPENAI_API_KEY" not in env and os.environ["OPENAI_API_KEY"] == "sk-x"


def test_a_venv_under_tmp_stays_visible_after_the_private_tmp(tmp_path, monkeypatch):
    """CI clones into a temp dir: the interpreter's venv under /tmp must be re-exposed
    read-only after bubblewrap mounts the private /tmp, or the child cannot start."""
    from aisci.engine.run import sandbox

    venv = Path("/tmp") / f"aisci-venv-{os.getpid()}"
    venv.mkdir(exist_ok=True)
    try:
        monkeypatch.setattr(sandbox, "interpreter_paths", lambda: [venv])
        args = sandbox.bwrap_argv("bwrap", sandbox.BwrapLayout(cwd=tmp_path), ["python"],
                                  home=str(tmp_path / "home"))
        tmpfs_at = args.index("/tmp", args.index("--tmpfs"))
        bind_at = args.index(str(venv))
        assert args[bind_at - 1] == "--ro-bind-try" and bind_at > tmpfs_at
    finally:
        venv.rmdir()
