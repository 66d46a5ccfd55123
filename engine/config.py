"""Typed configuration: ``<lab>/aisci.toml``, then ``~/.config/aisci/config.toml``, then
defaults, with command-line overrides on top.

Every constant of the reference pipeline is a setting here with the reference value as
its default. Each layer is validated on its own so an error names the file that holds
the bad value; the effective configuration remembers where every value came from.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from aisci.engine.errors import UsageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

LAB_CONFIG_NAME = "aisci.toml"


class ConfigError(UsageError):
    """One bad configuration value: ``file:key: problem``."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(f"{source}:{key}: {problem}" if key else f"{source}: {problem}")

    @property
    def message(self) -> str:
        return f"config error: {super().message}"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GeneralSettings(_Section):
    template: str = "grokking"
    auto_approve: bool = False
    smoke: bool = False
    """Run templates in their smoke setting (seconds on a CPU)."""


class ModelSettings(_Section):
    """Model per stage, as ``provider:model``; a stage left empty uses ``default``."""

    default: str = "anthropic:claude-sonnet-5-5"
    ideate: str | None = None
    novelty: str | None = None
    experiment: str | None = None
    plot: str | None = None
    write: str | None = None
    cite: str | None = None
    review: str | None = None
    improve: str | None = None

    def for_stage(self, stage: str) -> str:
        value = getattr(self, stage, None) if stage in type(self).model_fields else None
        return value or self.default


class EndpointSettings(_Section):
    """An OpenAI-compatible endpoint (DeepSeek, OpenRouter, vLLM, Ollama, llama.cpp)."""

    base_url: str
    api_key_env: str | None = None


class LLMSettings(_Section):
    max_tries: int = Field(6, ge=1, le=20)
    backoff_base_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    retry_after_cap_s: float = Field(120.0, gt=0)
    call_deadline_s: float = Field(900.0, gt=0)
    stream_restarts: int = Field(2, ge=0, le=10)
    max_tokens: int = Field(16000, ge=16)
    """Output cap per call; on models that think before answering (Claude Sonnet 5.x)
    the thinking counts against it, so keep it generous (only used tokens are billed)."""
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    """Anthropic ``output_config.effort`` (how much the model thinks); unset = the
    model's own default. Lower effort is cheaper and faster."""
    temperature: float = Field(0.75, ge=0, le=2)
    json_repairs: int = Field(1, ge=0, le=5)
    request_timeout_s: float = Field(300.0, gt=0)
    anthropic_base_url: str | None = None
    """Anthropic API root (a proxy or gateway); the ANTHROPIC_BASE_URL variable wins."""
    endpoints: dict[str, EndpointSettings] = Field(default_factory=dict)
    """Named OpenAI-compatible endpoints: ``[llm.endpoints.deepseek] base_url=...``."""


class IdeationSettings(_Section):
    num_ideas: int = Field(50, ge=1, le=10000)
    reflection_rounds: int = Field(3, ge=1, le=20)
    """Draft plus reflections, in total; the model may stop early with "I am done"."""
    duplicate_similarity: float = Field(0.8, gt=0, le=1)


class NoveltySettings(_Section):
    enabled: bool = True
    max_rounds: int = Field(10, ge=1, le=50)
    results_per_query: int = Field(10, ge=1, le=100)
    require_novel_for_auto_approve: bool = True
    deadline_s: float = Field(600.0, gt=0)


LiteratureSourceName = Literal["semantic_scholar", "openalex", "offline"]


def _default_literature_sources() -> list[LiteratureSourceName]:
    return ["semantic_scholar", "openalex"]


class LiteratureSettings(_Section):
    sources: list[LiteratureSourceName] = Field(default_factory=_default_literature_sources)
    semantic_scholar_url: str = "https://api.semanticscholar.org/graph/v1"
    openalex_url: str = "https://api.openalex.org"
    openalex_email: str | None = None
    offline_fixture: str | None = None
    requests_per_s_without_key: float = Field(1.0, gt=0)
    requests_per_s_with_key: float = Field(10.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    backoff_base_s: float = Field(1.0, ge=0)
    """First retry wait of a literature request; doubled per retry."""
    retry_after_cap_s: float = Field(30.0, ge=0)
    """Longest Retry-After a source may impose before we fail over instead of waiting."""
    breaker_threshold: int = Field(3, ge=1, le=50)
    breaker_cooldown_s: float = Field(60.0, ge=0)
    request_timeout_s: float = Field(20.0, gt=0)
    cache_ttl_days: float = Field(30.0, ge=0)


class ExperimentSettings(_Section):
    max_runs: int = Field(5, ge=1, le=50)
    max_attempts: int = Field(4, ge=1, le=20)
    run_timeout_s: float = Field(7200.0, gt=0)
    stderr_tail_chars: int = Field(1500, ge=100)
    stall_after_s: float = Field(900.0, gt=0)
    max_tool_turns: int = Field(30, ge=1, le=500)
    """Bound on edit-tool calls per run attempt."""


class PlotSettings(_Section):
    timeout_s: float = Field(600.0, gt=0)
    max_attempts: int = Field(4, ge=1, le=20)


class WriteupSettings(_Section):
    citation_rounds: int = Field(20, ge=0, le=100)
    section_refinements: int = Field(1, ge=0, le=5)
    chktex_rounds: int = Field(5, ge=0, le=20)
    compile_fix_rounds: int = Field(5, ge=0, le=20)
    compile_timeout_s: float = Field(300.0, gt=0)
    integrity_correction_rounds: int = Field(1, ge=0, le=5)


class ReviewSettings(_Section):
    ensemble: int = Field(5, ge=1, le=20)
    temperature: float = Field(0.75, ge=0, le=2)
    reflection_rounds: int = Field(5, ge=0, le=20)
    meta_review: bool = True
    use_images: bool = False
    few_shot_dir: str | None = None
    improve: bool = False


class BudgetSettings(_Section):
    lab_usd: float | None = Field(None, ge=0)
    idea_usd: float | None = Field(None, ge=0)


class SandboxSettings(_Section):
    mode: Literal["auto", "bwrap", "landlock", "none"] = "auto"
    """Isolation of experiment, plot and LaTeX processes. "auto": bubblewrap if it works
    here, else Landlock + no-new-privileges + seccomp, else nothing runs (the error says
    why and how to fix it); "bwrap" / "landlock": that layer or nothing runs; "none":
    run WITHOUT isolation (explicit opt-in, shown as a warning by doctor, status, TUI)."""
    require_isolation: bool = False
    """Not needed any more: no mode falls back silently. Still accepted so older
    aisci.toml files load; when true, sandbox.mode = "none" is refused as well."""
    grace_period_s: float = Field(3.0, ge=0, le=30)
    """SIGTERM to SIGKILL; with the 0.1 s watchdog tick every process of a run is dead
    within limit + 5 s at the default."""
    max_processes: int = Field(512, ge=8)
    max_file_size_mb: int = Field(4096, ge=1)
    max_rss_mb: Annotated[int, Field(ge=64)] | Literal["auto", "off"] = "auto"
    """Memory limit of a run's whole process tree in MB; "auto" = 80 % of the RAM shared
    among the execution slots; "off" = none (not recommended)."""
    allow_network: bool = False
    extra_env: list[str] = Field(default_factory=list)
    """Names of extra environment variables passed to experiments (never secrets)."""
    max_log_mb: int = Field(1024, ge=1)
    """Per-run log file cap; output beyond it is drained and counted, not written."""
    pids_cgroup: bool = True
    """Put each run in its own pids cgroup (hard process cap) when the cgroup fs is writable."""


class SchedulerSettings(_Section):
    gpus: list[int] | None = None
    """GPU indices to use; None = every visible GPU (NVML) or CPU slots when none."""
    parallel: int = Field(1, ge=1, le=64)
    """Concurrent experiments when running on CPU slots."""
    max_llm_tasks: int = Field(8, ge=1, le=256)
    backend: Literal["local", "ray"] = "local"
    """Where experiment, baseline and plot processes run: this machine, or the nodes of a
    Ray cluster (``pip install "aisci[ray]"``; the engine and the lab stay here)."""
    ray_address: str = "auto"
    """``auto`` (the cluster this machine belongs to), ``ray://host:port`` (Ray client)
    or a GCS address ``host:port``."""
    ray_shared_fs: bool = False
    """The lab folder is on a filesystem every node mounts at the same path: runs work
    in place instead of receiving a copy of the idea folder."""
    ray_max_ship_mb: int = Field(1024, ge=1, le=65536)
    """Bound on an idea folder sent to a node (and on the outputs that come back)."""
    ray_connect_timeout_s: float = Field(30.0, ge=1.0, le=600.0)
    """Bound on connecting to the cluster and on placing one run on its node."""
    run_gpus: int = Field(1, ge=1, le=16)
    """GPUs each run holds on a Ray node (a node offers GPUs // run_gpus slots)."""
    run_cpus: float = Field(1.0, ge=0.0, le=1024.0)
    """CPUs each run reserves on a Ray node."""
    run_memory_mb: int | None = Field(None, ge=64, le=16_777_216)
    """Memory each run reserves on a Ray node, also its tree's memory limit there;
    None: the node's own ``sandbox.max_rss_mb`` rule."""

    @field_validator("ray_address")
    @classmethod
    def _check_ray_address(cls, value: str) -> str:
        v = value.strip()
        if v == "auto" or re.fullmatch(r"(ray://)?\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}", v):
            return v
        raise ValueError(f"expected auto, ray://host:port or host:port, got {value!r}")


class TUISettings(_Section):
    theme: str = "aisci-dark"
    image_protocol: Literal["auto", "sixel", "kitty", "halfcell", "none"] = "auto"
    keys: dict[str, str] = Field(default_factory=dict)
    """Binding id -> key, e.g. ``approve-idea = "A"``."""
    log_buffer_lines: int = Field(5000, ge=100)


class WorkSizeSettings(_Section):
    """How much work one template run does; unset keys keep the template's
    ``template.toml [work_size]`` defaults (its full-run, reference values)."""

    steps: int | None = Field(None, ge=1, le=100_000_000)
    """Training steps / updates / iterations."""
    seeds: int | None = Field(None, ge=1, le=100)
    """Seeds per dataset."""
    eval: int | None = Field(None, ge=1, le=100_000_000)
    """Evaluation size (the template's own unit: samples or batches)."""


WORK_SIZE_KEYS = ("steps", "seeds", "eval")
WORK_SIZE_ENV_PREFIX = "AISCI_WORK_"
"""``AISCI_WORK_STEPS`` etc.: the environment overrides aisci.toml, and is what
experiment.py reads."""


class Settings(_Section):
    general: GeneralSettings = Field(default_factory=GeneralSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    ideation: IdeationSettings = Field(default_factory=IdeationSettings)
    novelty: NoveltySettings = Field(default_factory=NoveltySettings)
    literature: LiteratureSettings = Field(default_factory=LiteratureSettings)
    experiment: ExperimentSettings = Field(default_factory=ExperimentSettings)
    plot: PlotSettings = Field(default_factory=PlotSettings)
    writeup: WriteupSettings = Field(default_factory=WriteupSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    tui: TUISettings = Field(default_factory=TUISettings)
    work_size: dict[str, WorkSizeSettings] = Field(default_factory=dict)
    """Per-template work size: ``[work_size.grokking] steps = 1000``."""

    @field_validator("models")
    @classmethod
    def _models_have_provider(cls, v: ModelSettings) -> ModelSettings:
        for name, value in v.model_dump().items():
            if value is not None and ":" not in value:
                raise ValueError(f"models.{name} = {value!r}: expected 'provider:model'")
        return v


def user_config_path() -> Path:
    override = os.environ.get("AISCI_USER_CONFIG")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir("aisci", appauthor=False)) / "config.toml"


class EffectiveConfig:
    """The merged settings plus, for every dotted key, where its value came from."""

    def __init__(self, settings: Settings, origins: dict[str, str]) -> None:
        self.settings = settings
        self.origins = origins

    def origin(self, dotted: str) -> str:
        return self.origins.get(dotted, "default")

    def rows(self) -> list[tuple[str, Any, str]]:
        out: list[tuple[str, Any, str]] = []
        for key, value in _flatten(self.settings.model_dump(mode="json")).items():
            out.append((key, value, self.origin(key)))
        return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        # Free-form maps (endpoints, keys) are shown as one value.
        if isinstance(v, dict) and v and k not in ("endpoints", "keys"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _describe_error(err: ErrorDetails) -> tuple[str, str]:
    key = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return key, "unknown key"
    if kind == "missing":
        return key, "required key is missing"
    msg = err["msg"]
    inp = err.get("input")
    if not isinstance(inp, dict | list):
        msg = f"{msg} (got {inp!r})"
    return key, msg


def validate_layer(data: dict[str, Any], source: str) -> None:
    """Validate one layer on its own, raising ConfigError naming ``source``."""
    try:
        Settings.model_validate(data)
    except ValidationError as exc:
        key, problem = _describe_error(exc.errors()[0])
        raise ConfigError(source, key, problem) from None


MAX_CONFIG_BYTES = 1024 * 1024
"""A configuration file larger than this is refused (settings fit in a few KB)."""


def read_toml(path: Path) -> dict[str, Any]:
    """A user-edited TOML file (aisci.toml, the user config): bounded, UTF-8 (a BOM is
    allowed), one ConfigError naming the file for anything it cannot use."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), "", f"larger than {MAX_CONFIG_BYTES // 1024} KB; "
                          "expected a TOML settings file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(str(path), "", f"not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                          f"line {line}, offset {exc.start}); save the file as UTF-8"
                          ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"invalid TOML: {exc}") from None


def _merge(base: dict[str, Any], top: dict[str, Any], source: str, origins: dict[str, str],
           prefix: str = "") -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("endpoints", "keys"):
            out[k] = _merge(out[k], v, source, origins, key + ".")
        else:
            out[k] = v
            if isinstance(v, dict) and v and k not in ("endpoints", "keys"):
                for sub in _flatten(v, key + "."):
                    origins[sub] = source
            else:
                origins[key] = source
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``section.key=value`` (value in TOML syntax, bare words taken as strings)."""
    if "=" not in text:
        raise ConfigError("command line", text, "expected section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    parts = dotted.split(".")
    out: dict[str, Any] = {parts[-1]: value}
    for p in reversed(parts[:-1]):
        out = {p: out}
    return out


def load_config(lab_dir: Path | None = None, overrides: dict[str, Any] | None = None,
                user_config: Path | None = None) -> EffectiveConfig:
    """Merge defaults < user config < lab config < overrides (dotted keys)."""
    origins: dict[str, str] = {}
    merged: dict[str, Any] = {}
    layers: list[tuple[str, dict[str, Any]]] = []
    ucfg = user_config if user_config is not None else user_config_path()
    if ucfg.is_file():
        layers.append((str(ucfg), read_toml(ucfg)))
    if lab_dir is not None:
        lcfg = Path(lab_dir) / LAB_CONFIG_NAME
        if lcfg.is_file():
            layers.append((str(lcfg), read_toml(lcfg)))
    if overrides:
        cli: dict[str, Any] = {}
        for dotted, value in overrides.items():
            cli = _merge(cli, _nest(dotted, value), "command line", {})
        layers.append(("command line", cli))
    for source, data in layers:
        validate_layer(data, source)
        merged = _merge(merged, data, source, origins)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:  # pragma: no cover - each layer already validated
        key, problem = _describe_error(exc.errors()[0])
        raise ConfigError("merged configuration", key, problem) from None
    return EffectiveConfig(settings, origins)
