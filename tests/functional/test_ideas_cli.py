"""``aisci ideas ...``, ``aisci approve`` and ``aisci veto`` in-process: reference
ideas.json import/export round trip, list/show with evidence and history, generation
with a scripted cassette, a novelty check over the offline literature source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aisci.engine.cli import main
from aisci.engine.lab.store import LabStore

REFERENCE_IDEAS = [
    {"Name": "batch_size_grokking",
     "Title": "Batch Size Grokking: the training batch size and the grokking phenomenon",
     "Experiment": "Grow the batch size during training, starting small, and compare the "
                   "step at which validation accuracy exceeds 99%.",
     "Interestingness": 6, "Feasibility": 4, "Novelty": 4, "novel": True},
    {"Name": "operand_curriculum",
     "Title": "Operand curricula for modular arithmetic",
     "Experiment": "Order training examples by operand size and measure grokking speed.",
     "Interestingness": 7, "Feasibility": 8, "Novelty": 6, "novel": False,
     "Notes": {"source": "reference run", "tags": ["curriculum", "ordering"]}},
    {"Name": "weight_init_scale",
     "Title": "Initialisation scale as a switch for grokking",
     "Experiment": "Multiply initial weights by factors 0.1..10 and log the grokking delay.",
     "Interestingness": 8, "Feasibility": 9, "Novelty": 5},
]


@pytest.fixture(autouse=True)
def no_user_config(monkeypatch, tmp_path):
    monkeypatch.setenv("AISCI_USER_CONFIG", str(tmp_path / "no-user-config.toml"))


def test_import_export_round_trip(tmp_path, capsys):
    lab = tmp_path / "lab"
    src = tmp_path / "ideas.json"
    src.write_text(json.dumps(REFERENCE_IDEAS, indent=4))
    assert main(["ideas", "import", str(src), "--lab", str(lab), "--template", "grokking"]) == 0
    assert "imported 3 idea(s)" in capsys.readouterr().out
    out = tmp_path / "out.json"
    assert main(["ideas", "export", str(out), "--lab", str(lab)]) == 0
    assert json.loads(out.read_text()) == REFERENCE_IDEAS
    # Key order survives too, so diffs against the original are clean.
    assert [list(o) for o in json.loads(out.read_text())] == [list(o) for o in REFERENCE_IDEAS]
    # Stdout export; re-import into another lab gives the same file again.
    capsys.readouterr()
    assert main(["ideas", "export", "--lab", str(lab)]) == 0
    assert json.loads(capsys.readouterr().out) == REFERENCE_IDEAS
    lab2 = tmp_path / "lab2"
    assert main(["ideas", "import", str(out), "--lab", str(lab2)]) == 0
    capsys.readouterr()
    assert main(["ideas", "export", "--lab", str(lab2)]) == 0
    assert json.loads(capsys.readouterr().out) == REFERENCE_IDEAS
    with LabStore(lab2) as st:
        rows = st.list_ideas()
        assert [r.status for r in rows] == ["checked", "checked", "proposed"]
        assert rows[2].novelty is None and rows[0].origin == "imported"
    # Importing again skips existing names instead of duplicating them.
    assert main(["ideas", "import", str(src), "--lab", str(lab)]) == 0
    assert "skipped 3" in capsys.readouterr().out


def test_import_rejects_bad_files(tmp_path, capsys):
    lab = tmp_path / "lab"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**REFERENCE_IDEAS[0], "Feasibility": 42}]))
    assert main(["ideas", "import", str(bad), "--lab", str(lab)]) == 2
    assert "bad.json[0]: Feasibility" in capsys.readouterr().err
    bad.write_text("{not json")
    assert main(["ideas", "import", str(bad), "--lab", str(lab)]) == 2
    assert "invalid JSON" in capsys.readouterr().err
    assert main(["ideas", "import", str(tmp_path / "missing.json"), "--lab", str(lab)]) == 2


def test_list_show_approve_veto(tmp_path, capsys):
    lab = tmp_path / "lab"
    src = tmp_path / "ideas.json"
    src.write_text(json.dumps(REFERENCE_IDEAS))
    main(["ideas", "import", str(src), "--lab", str(lab)])
    assert main(["approve", "1", "--lab", str(lab)]) == 0
    assert main(["veto", "operand_curriculum", "--why", "already done by X", "--lab",
                 str(lab)]) == 0
    assert main(["veto", "3", "--why", "  ", "--lab", str(lab)]) == 2
    assert main(["approve", "99", "--lab", str(lab)]) == 2
    capsys.readouterr()
    assert main(["ideas", "list", "--lab", str(lab)]) == 0
    out = capsys.readouterr().out
    assert "batch_size_grokking" in out and "approved" in out and "vetoed" in out
    assert main(["ideas", "list", "--json", "--lab", str(lab)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["novelty"] for r in rows] == ["novel", "not novel", "-"]
    assert main(["ideas", "show", "2", "--lab", str(lab)]) == 0
    out = capsys.readouterr().out
    assert "already done by X" in out and "Novelty: not novel" in out and "Notes:" in out
    assert main(["ideas", "edit", "3", "--field", "Feasibility=7", "--lab", str(lab)]) == 0
    assert main(["ideas", "edit", "3", "--field", "Feasibility=70", "--lab", str(lab)]) == 2


def write_template(root: Path) -> Path:
    t = root / "mini"
    t.mkdir()
    (t / "experiment.py").write_text("print('mini')\n")
    (t / "prompt.json").write_text(json.dumps({"system": "sys", "task_description": "grokking"}))
    return t


def test_generate_and_check_with_cassette(tmp_path, capsys):
    lab = tmp_path / "lab"
    template = write_template(tmp_path)
    idea = {"Name": "grokking_weight_decay_sweep", "Title": "Weight decay sweep for grokking",
            "Experiment": "Sweep weight decay from 0 to 1 and record the grokking step.",
            "Interestingness": 5, "Feasibility": 9, "Novelty": 3}
    cassette = tmp_path / "c.json"
    cassette.write_text(json.dumps({"responses": [
        {"match": "ideate/idea-1/round-1", "text": f"THOUGHT: x\n```json\n{json.dumps(idea)}\n```"},
        {"match": "ideate/idea-1/round-2",
         "text": f"THOUGHT: I am done\n```json\n{json.dumps(idea)}\n```"},
        {"match": "novelty/grokking_weight_decay_sweep/round-1",
         "text": '```json\n{"Query": "grokking weight decay"}\n```'},
        {"match": "novelty/grokking_weight_decay_sweep/round-2",
         "text": '```json\n{"Decision": "not novel", "Rationale": "Power et al. 2022"}\n```'},
    ]}))
    common = ["--lab", str(lab), "--set", f"models.default=scripted:{cassette}"]
    assert main(["ideas", "generate", "-n", "1", "--template", str(template), *common]) == 0
    assert "grokking_weight_decay_sweep" in capsys.readouterr().out
    assert main(["ideas", "check", "1", *common, "--set", 'literature.sources=["offline"]']) == 0
    assert "not novel after 2 round(s)" in capsys.readouterr().out
    assert main(["ideas", "show", "1", "--lab", str(lab)]) == 0
    out = capsys.readouterr().out
    assert "query: grokking weight decay" in out
    assert "Grokking: Generalization Beyond Overfitting" in out
    assert "novelty_checked" in out
    # An unknown cassette key fails with one line and a non-zero exit.
    assert main(["ideas", "generate", "-n", "1", "--template", str(template), *common]) == 1
    assert "no answer for 'ideate/idea-2/round-1'" in capsys.readouterr().err
