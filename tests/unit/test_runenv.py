"""The run environment record written by the engine into each run folder."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import platform
import socket
import subprocess
import sys

from aisci.engine.run import environment as runenv

CONTRACT_KEYS = {"python", "torch", "cuda", "cudnn", "gpus", "driver", "cpu_model",
                 "cpu_count", "platform", "hostname_sha256", "numpy", "seeds"}


def test_record_has_the_contract_fields_and_real_values(tmp_path):
    env = runenv.write_run_env(tmp_path / "run_1", "", {"d": {"means": {"x": 1}, "seeds": [0, 1]}})
    on_disk = json.loads((tmp_path / "run_1" / "run_env.json").read_text())
    assert on_disk == env
    assert CONTRACT_KEYS <= set(env)
    assert env["python"] == platform.python_version()
    assert env["torch"] == md.version("torch") and env["numpy"] == md.version("numpy")
    assert env["cpu_count"] >= 1 and env["cpu_model"]
    assert env["hostname_sha256"] == hashlib.sha256(socket.gethostname().encode()).hexdigest()
    assert socket.gethostname() not in json.dumps(env)
    assert env["seeds"] == [0, 1]
    # CUDA_VISIBLE_DEVICES="" hides every GPU: no GPU, driver or CUDA may be claimed.
    assert env["gpus"] == [] and env["cuda"] is None and env["driver"] is None


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(runenv, "host_gpus", lambda: (("NVIDIA A100", "NVIDIA H100"), "550.1"))
    assert runenv.visible_gpus(None) == ["NVIDIA A100", "NVIDIA H100"]
    assert runenv.visible_gpus("1") == ["NVIDIA H100"]
    assert runenv.visible_gpus("") == []
    assert runenv.visible_gpus("0,7") == ["NVIDIA A100"]
    env = runenv.collect_run_env("1")
    assert env["gpus"] == ["NVIDIA H100"] and env["driver"] == "550.1"


def test_seeds_from_final_info():
    assert runenv.seeds_from(None) is None
    assert runenv.seeds_from({"a": {"means": {}}}) is None
    assert runenv.seeds_from({"seeds": [3], "a": {"seeds": [1, 3]}, "b": {"seeds": [2]}}) == [3, 1, 2]


def test_collecting_does_not_import_torch():
    code = ("import sys; from aisci.engine.run.environment import collect_run_env; e = collect_run_env('');"
            "print('torch' in sys.modules, e['torch'] is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
