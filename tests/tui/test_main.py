"""aisci-tui chooses the offline demo for a new lab only when the model's key is absent."""

from __future__ import annotations

from aisci.tui.launch import _wants_demo
from aisci.tui.main import build_parser


def _args(lab):
    return build_parser().parse_args(["--lab", str(lab)])


def test_new_lab_without_key_runs_the_demo(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("AISCI_USER_CONFIG", str(tmp_path / "none.toml"))
    assert _wants_demo(_args(tmp_path / "lab"), {}) is True


def test_key_present_or_existing_lab_opens_a_real_lab(tmp_path, monkeypatch):
    monkeypatch.setenv("AISCI_USER_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    assert _wants_demo(_args(tmp_path / "lab"), {}) is False
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    lab = tmp_path / "existing"
    lab.mkdir()
    (lab / "aisci.db").write_bytes(b"")
    assert _wants_demo(_args(lab), {}) is False
    assert _wants_demo(_args(tmp_path / "lab2"), {"models.default": "scripted:demo"}) is False
