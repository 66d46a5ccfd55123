"""Small real labs for the engine tests: a copied tiny template with its baseline, an
idea row, stage contexts over a real store and executor, and a provider that fails on
purpose. Fixtures defined here are imported by the test modules that use them."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aisci.engine.config import load_config
from aisci.engine.events import EventBus
from aisci.engine.lab.store import IdeaRow, LabStore
from aisci.engine.llm.base import LLMRequest, ScriptMissing
from aisci.engine.llm.client import LLMClient
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.llm.scripted import ScriptedProvider
from aisci.engine.run.executor import Executor
from aisci.engine.run.gpu import GPUInfo
from aisci.engine.run.scheduler import Scheduler
from aisci.engine.stages.context import StageContext

from support import DATA

TINY = DATA / "templates" / "tiny"
IDEA = {"Name": "faster_lr", "Title": "A faster learning rate",
        "Experiment": "Raise the learning rate and train longer; compare the final loss.",
        "Interestingness": 5, "Feasibility": 9, "Novelty": 3}


class NoGPU:
    """NVML with no device: the scheduler hands out CPU slots."""

    def gpus(self) -> list[GPUInfo]:
        return []

    def memory_by_pid(self) -> dict[int, int]:
        return {}

    def driver_version(self) -> str | None:
        return None


@dataclass
class FakeTemplateInfo:
    """Only the TemplateInfo fields the workspace reads."""

    name: str
    path: Path
    lower_is_better: list[str] = field(default_factory=lambda: ["final_loss"])
    higher_is_better: list[str] = field(default_factory=list)


def idea_row(idea_id: int = 1, name: str = "faster_lr") -> IdeaRow:
    return IdeaRow(id=idea_id, name=name, template="tiny",
                   data={"Name": name, "Title": "A faster learning rate",
                         "Experiment": "Raise the learning rate and compare the final loss."},
                   status="approved", novelty=None, origin="generated", created_at=0.0,
                   updated_at=0.0)


@pytest.fixture
def template(tmp_path: Path) -> FakeTemplateInfo:
    src = tmp_path / "tpl" / "tiny"
    shutil.copytree(TINY, src)
    # Leftovers a used template folder may have: they must not be copied.
    (src / "run_3").mkdir()
    (src / "run_3" / "final_info.json").write_text("{}")
    (src / "logs").mkdir()
    (src / "logs" / "run_3.log").write_text("old")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "experiment.cpython-311.pyc").write_bytes(b"\0")
    return FakeTemplateInfo("tiny", src)


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    run0 = tmp_path / "baselines" / "tiny-smoke" / "run_0"
    run0.mkdir(parents=True)
    (run0 / "final_info.json").write_text(json.dumps({"toy": {"means": {"final_loss": 0.5}}}))
    return run0


class FlakyProvider:
    """The scripted provider, except that steps containing ``fail_on`` raise, as if the
    engine died at that point."""

    provider = "scripted"

    def __init__(self, cassette: Path, fail_on: str | None = None) -> None:
        self.inner = ScriptedProvider(str(cassette))
        self.model = self.inner.model
        self.fail_on = fail_on

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.inner.requests]

    async def complete(self, request: LLMRequest, stage: str, on_text=None):
        if self.fail_on and self.fail_on in request.step:
            raise ScriptMissing(f"simulated crash at {stage}/{request.step}")
        return await self.inner.complete(request, stage, on_text)

    async def aclose(self) -> None:
        return None


def make_ctx(lab: Path, provider, **overrides) -> StageContext:
    settings = load_config(lab, overrides={
        "general.smoke": True, "models.default": "scripted:test", "experiment.max_runs": 3,
        "experiment.run_timeout_s": 60, "plot.timeout_s": 60, "sandbox.grace_period_s": 0.5,
        **overrides}, user_config=lab / "no-user-config.toml").settings
    store = LabStore(lab)
    bus = EventBus()
    llm = LLMClient(settings, store, bus, provider_factory=lambda spec: provider)
    return StageContext(lab=lab, settings=settings, store=store, bus=bus, llm=llm,
                        prompts=PromptLibrary(lab), executor=Executor(settings, bus, store),
                        scheduler=Scheduler(settings))


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    lab = tmp_path / "lab"
    (lab / "templates").mkdir(parents=True)
    shutil.copytree(DATA / "templates" / "tiny", lab / "templates" / "tiny")
    return lab


def add_idea(ctx: StageContext, template: str = "tiny") -> int:
    return ctx.store.add_idea(IDEA["Name"], template, IDEA, status="approved")
