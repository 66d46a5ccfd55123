"""The bundled research templates: metadata, seed ideas, smoke runs, template internals.

Smoke runs go through ``check_template`` (one smoke run + plot + LaTeX per template),
so each template's real experiment.py runs once on the CPU in its smoke setting.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from aisci.engine.cli import main
from aisci.engine.config import WorkSizeSettings
from aisci.engine.lab.idea_schema import validate_idea
from aisci.engine.lab.layout import baseline_dir
from aisci.engine.lab.template_check import check_template
from aisci.engine.lab.templates import (
    TemplateError,
    available_templates,
    find_template,
    load_template_info,
    work_size,
    work_size_env,
    work_size_tag,
)
from aisci.engine.resources import templates_dir

BUNDLED = ["grokking", "diffusion_2d", "nanogpt"]
EXPECTED_METRICS = {
    "grokking": {"final_train_loss", "final_val_loss", "final_train_acc", "final_val_acc",
                 "step_val_acc_99", "full_val_loss", "full_val_acc", "final_compressed_bytes"},
    "diffusion_2d": {"training_time", "eval_loss", "inference_time", "kl_divergence"},
    "nanogpt": {"best_val_loss", "final_train_loss", "final_train_loss_est", "total_train_time",
                "avg_inference_tokens_per_second"},
}
EXPECTED_WORK_SIZE = {
    "grokking": {"steps": 7500, "seeds": 3, "eval": 8},
    "diffusion_2d": {"steps": 10_000, "seeds": 1, "eval": 10_000},
    "nanogpt": {"steps": 5000, "seeds": 3, "eval": 200},
}
EXPECTED_DATASETS = {
    "grokking": ["x_plus_y", "x_minus_y", "x_div_y", "permutation"],
    "diffusion_2d": ["circle", "dino", "line", "moons"],
    "nanogpt": ["shakespeare_char"],
}
EXPECTED_BIB = {
    "grokking": ["2201.02177", "Progress Measures for Grokking", "Omnigrok",
                 "Attention is All you Need", "Decoupled Weight Decay Regularization"],
    "diffusion_2d": ["Denoising Diffusion Probabilistic Models", "Nonequilibrium Thermodynamics",
                     "Estimating Gradients of the Data Distribution",
                     "Improved Denoising Diffusion", "Same Stats, Different Graphs"],
    "nanogpt": ["Unsupervised Multitask Learners", "Attention is All you Need", "nanoGPT",
                "Adam: A Method for Stochastic Optimization",
                "Decoupled Weight Decay Regularization"],
}


def _module(template: str, name: str = "experiment"):
    path = templates_dir() / template / f"{name}.py"
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"tpl_{template}_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


# -- metadata -------------------------------------------------------------------------------

def test_bundled_templates_are_found_with_their_metadata():
    assert set(BUNDLED) <= set(available_templates())
    for name in BUNDLED:
        info = find_template(name)
        assert info.name == name and info.has_toml
        assert info.path == (templates_dir() / name).resolve()
        assert info.datasets[: len(EXPECTED_DATASETS[name])] == EXPECTED_DATASETS[name]
        assert info.smoke_env == {"AISCI_SMOKE": "1"}
        assert set(info.lower_is_better + info.higher_is_better) <= EXPECTED_METRICS[name]
        assert info.expected_time_gpu_s and info.expected_time_cpu_s
        assert info.work_size == EXPECTED_WORK_SIZE[name]
        assert set(info.metric_units) == EXPECTED_METRICS[name]
    assert find_template("diffusion_2d").metric_units["kl_divergence"] == "bits"
    nano = find_template("nanogpt")
    assert nano.check_command == ["python", "causality_check.py", "--project", "{project}"]
    assert nano.prepare_command == ["python", "prepare.py"]
    assert find_template("grokking").check_command is None


def test_a_lab_template_overrides_the_bundled_one_and_paths_work(tmp_path):
    lab = tmp_path / "lab"
    own = lab / "templates" / "grokking"
    shutil.copytree(templates_dir() / "grokking", own)
    assert find_template("grokking", lab).path == own.resolve()
    assert find_template(str(own)).path == own.resolve()
    with pytest.raises(TemplateError, match=r"template 'nope' not found .*available: .*grokking"):
        find_template("nope", lab)


def test_baseline_dir_separates_smoke_and_full(tmp_path):
    assert baseline_dir(tmp_path, "grokking", False) == tmp_path / "baselines/grokking/run_0"
    assert baseline_dir(tmp_path, "grokking", True) == tmp_path / "baselines/grokking-smoke/run_0"


def test_work_size_defaults_then_lab_config_then_environment(tmp_path):
    gk = find_template("grokking")
    # Full run at the defaults: nothing to pass, the default baseline folder.
    size = work_size(gk, None, {}, smoke=False)
    assert size == {"steps": 7500, "seeds": 3, "eval": 8}
    assert work_size_env(gk, size, False) == {} and work_size_tag(gk, size, False) == ""
    # aisci.toml [work_size.grokking] changes steps; the environment wins over it for seeds.
    lab = WorkSizeSettings(steps=500, seeds=2)
    size = work_size(gk, lab, {"AISCI_WORK_SEEDS": "1"}, smoke=False)
    assert size == {"steps": 500, "seeds": 1, "eval": 8}
    assert work_size_env(gk, size, False) == {"AISCI_WORK_STEPS": "500", "AISCI_WORK_SEEDS": "1"}
    tag = work_size_tag(gk, size, False)
    assert tag == "steps500-seeds1"
    assert baseline_dir(tmp_path, "grokking", False, tag) == \
        tmp_path / "baselines/grokking-steps500-seeds1/run_0"
    # Smoke runs keep the template's smoke sizes unless a size is chosen explicitly.
    assert work_size(gk, None, {}, smoke=True) == {}
    assert work_size_env(gk, work_size(gk, lab, {}, smoke=True), True) == \
        {"AISCI_WORK_STEPS": "500", "AISCI_WORK_SEEDS": "2"}
    for bad in ("0", "-3", "many", "1.5"):
        with pytest.raises(TemplateError, match=r"AISCI_WORK_STEPS='.*': expected a positive "
                                                r"integer \(steps of a grokking run\)"):
            work_size(gk, None, {"AISCI_WORK_STEPS": bad}, smoke=False)


def test_experiment_rejects_a_bad_work_size_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(templates_dir() / "grokking" / "experiment.py"),
                           f"--out_dir={tmp_path / 'run_0'}"], capture_output=True, text=True,
                          env={**os.environ, "AISCI_WORK_STEPS": "lots"}, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "AISCI_WORK_STEPS='lots': expected a positive integer"


def test_template_toml_errors_name_the_key(tmp_path):
    tpl = tmp_path / "t"
    tpl.mkdir()
    (tpl / "template.toml").write_text('name = "t"\n[metrics]\nlower_is_better = "loss"\n')
    with pytest.raises(TemplateError, match=r"template.toml: metrics.lower_is_better: expected "
                                            r"a list of strings, got 'loss'"):
        load_template_info(tpl)
    (tpl / "template.toml").write_text('[work_size]\nsteps = 0\n')
    with pytest.raises(TemplateError, match=r"work_size.steps: expected a positive integer"):
        load_template_info(tpl)
    (tpl / "template.toml").write_text('[work_size]\nepochs = 3\n')
    with pytest.raises(TemplateError, match=r"work_size.epochs: expected only keys"):
        load_template_info(tpl)
    (tpl / "template.toml").write_text('[metrics]\nunits = { loss = 3 }\n')
    with pytest.raises(TemplateError, match=r"metrics.units: expected a table"):
        load_template_info(tpl)
    (tpl / "template.toml").write_text('nmae = "t"\n')
    with pytest.raises(TemplateError, match="nmae"):
        load_template_info(tpl)
    (tpl / "template.toml").unlink()
    info = load_template_info(tpl)  # reference-style: no toml, defaults
    assert info.name == "t" and not info.has_toml and info.smoke_env == {"AISCI_SMOKE": "1"}


@pytest.mark.parametrize("name", BUNDLED)
def test_prompt_seed_ideas_and_references(name):
    root = templates_dir() / name
    prompt = json.loads((root / "prompt.json").read_text())
    assert prompt["system"].strip() and len(prompt["task_description"]) > 200
    ideas = json.loads((root / "seed_ideas.json").read_text())
    assert 1 <= len(ideas) <= 2
    for i, idea in enumerate(ideas):
        validate_idea(idea, f"{name} seed {i}")
    bib = (root / "latex" / "references.bib").read_text()
    for needle in EXPECTED_BIB[name]:
        assert needle in bib, f"{name}: references.bib lacks {needle!r}"
    tex = (root / "latex" / "template.tex").read_text()
    for section in ("Introduction", "Related Work", "Method", "Experimental Setup",
                    "Results", "Conclusion"):
        assert f"\\section{{{section}}}" in tex
    assert "\\begin{abstract}" in tex and "\\bibliography{references}" in tex


# -- smoke runs (the real experiment.py of each template) ---------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_smoke_run_passes_the_template_check(name, tmp_path):
    work = tmp_path / name
    t0 = time.time()
    problems = check_template(templates_dir() / name, keep_dir=work,
                              compile_latex=shutil.which("pdflatex") is not None)
    took = time.time() - t0
    assert problems == [], [str(p) for p in problems]
    assert took < 120, f"check of {name} took {took:.0f} s"
    info = json.loads((work / "run_0" / "final_info.json").read_text())
    assert list(info) == EXPECTED_DATASETS[name]
    for ds, value in info.items():
        assert set(value["means"]) >= EXPECTED_METRICS[name], ds
        for metric, per_seed in value["final_info_dict"].items():
            n = len(per_seed)
            assert value["means"][metric] == pytest.approx(float(np.mean(per_seed)))
            assert value["stderrs"][metric] == pytest.approx(float(np.std(per_seed) / math.sqrt(n)))
    results = json.loads((work / "run_0" / "all_results.json").read_text())
    assert results and all(r["train"] for r in results.values())  # per-step logs for plots
    assert list(work.glob("*.png"))
    if name == "grokking":
        run = results["x_plus_y_0"]
        assert run["val"] and run["complexity"][0]["compressed_bytes"] > 1000
        assert info["permutation"]["means"]["step_val_acc_99"] == 20  # smoke: never reached
    if shutil.which("pdflatex"):
        assert (work / "latex" / "template.pdf").stat().st_size > 10_000


# -- template internals ---------------------------------------------------------------------

def test_grokking_datasets_are_correct_and_the_split_is_seeded():
    gk = _module("grokking")
    (x0, y0), (xv0, yv0), vocab, n_out = gk.make_split("x_div_y", 0)
    assert len(x0) + len(xv0) == 97 * 96 and vocab == 99 and n_out == 97
    a, b, c = x0[:, 0] - 2, x0[:, 2] - 2, y0
    assert bool(((c * b) % 97 == a).all())  # c = a / b  <=>  c * b = a (mod 97)
    (x1, _), _, _, _ = gk.make_split("x_div_y", 1)
    (x0b, _), _, _, _ = gk.make_split("x_div_y", 0)
    assert x0.equal(x0b) and not x0.equal(x1)
    (xp, _), (xpv, _), vocab_p, n_out_p = gk.make_split("permutation", 0)
    assert len(xp) == len(xpv) == 120 * 120 // 2 and n_out_p == 120
    (xs, ys), _, _, _ = gk.make_split("x_minus_y", 0)
    assert bool(((xs[:, 0] - xs[:, 2]) % 97 == ys).all())


def test_grokking_last_position_shortcut_matches_the_full_forward():
    import torch
    gk = _module("grokking")
    torch.manual_seed(0)
    model = gk.Transformer(2, 128, 4, 99, 97, seq_len=4).eval()
    tokens = torch.randint(0, 99, (16, 4))
    with torch.no_grad():
        x = model.tok(tokens) + model.pos.weight[:4]
        for block in model.blocks:
            x = block(x)
        full = model.head(model.ln_f(x[:, -1]))
        assert torch.allclose(full, model(tokens), atol=1e-5)


def test_grokking_training_is_deterministic(monkeypatch):
    import torch
    gk = _module("grokking")
    monkeypatch.setattr(gk, "NUM_UPDATES", 12)
    monkeypatch.setattr(gk, "EVAL_BATCHES", 1)  # validation draws: 1 batch, not 8
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the smoke setting does; the machine is shared
    try:
        a, _ = gk.train_one("x_plus_y", 3, "cpu")
        b, _ = gk.train_one("x_plus_y", 3, "cpu")
    finally:
        torch.set_num_threads(threads)
    a.pop("train_time_s"), b.pop("train_time_s")
    assert a == b


def test_diffusion_knn_kl_estimator():
    df = _module("diffusion_2d")
    rng = np.random.default_rng(0)
    real = rng.normal(size=(3000, 2))
    same = rng.normal(size=(3000, 2))
    shifted = rng.normal(loc=2.0, size=(3000, 2))
    assert abs(df.knn_kl_divergence(real, same)) < 0.2
    # KL(N(0,I) || N(m,I)) = |m|^2 / 2 = 4 nats for m = (2, 2); the template reports bits.
    # With 3,000 points the k-NN estimate is biased low this far out (closed-form cases
    # at larger n: tests/unit/test_template_metrics.py).
    assert 4.0 / math.log(2) - 1.5 < df.knn_kl_divergence(real, shifted) < 4.0 / math.log(2) + 0.5
    for name in df.DATASETS:
        pts = df.make_dataset(name, 1000)
        assert pts.shape == (1000, 2) and float(pts.abs().max()) < 8


def _run_causality(project: Path) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, str(templates_dir() / "nanogpt" / "causality_check.py"),
                           "--project", str(project)], capture_output=True, text=True, timeout=120)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_nanogpt_causality_check_passes_and_catches_a_leak(tmp_path):
    project = tmp_path / "idea"
    shutil.copytree(templates_dir() / "nanogpt", project)
    code, verdict = _run_causality(project)
    assert code == 0 and verdict["causal"] is True
    src = (project / "experiment.py").read_text()
    leaky = re.sub(r"is_causal=True", "is_causal=False", src)
    assert leaky != src
    (project / "experiment.py").write_text(leaky)
    code, verdict = _run_causality(project)
    assert code == 1 and verdict["causal"] is False and verdict["max_abs_diff"] > 1e-5
    (project / "experiment.py").write_text("raise SystemExit('broken')\n")
    code, verdict = _run_causality(project)
    assert code == 2 and verdict["causal"] is None and "broken" in verdict["error"]


def test_nanogpt_prepare_builds_the_bundled_corpus_without_network_in_smoke_mode(tmp_path):
    tpl = tmp_path / "nanogpt"
    shutil.copytree(templates_dir() / "nanogpt", tpl)
    env = {**os.environ, "AISCI_SMOKE": "1"}
    proc = subprocess.run([sys.executable, "prepare.py"], cwd=tpl, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "enwik8 and text8 not downloaded" in proc.stdout
    meta = json.loads((tpl / "data" / "shakespeare_char" / "meta.json").read_text())
    assert meta["vocab_size"] == 65
    train = np.fromfile(tpl / "data" / "shakespeare_char" / "train.bin", dtype=np.uint16)
    val = np.fromfile(tpl / "data" / "shakespeare_char" / "val.bin", dtype=np.uint16)
    assert len(train) + len(val) == 1_115_394 and abs(len(train) / 1_115_394 - 0.9) < 1e-3
    assert "".join(meta["itos"][i] for i in train[:14]) == "First Citizen:"


def test_cli_template_list(capsys):
    assert main(["template", "list"]) == 0
    out = capsys.readouterr().out
    for name in BUNDLED:
        assert re.search(rf"^{name}\s+\S", out, re.M)
