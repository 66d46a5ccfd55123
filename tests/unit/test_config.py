"""Configuration layers (defaults < user < lab < command line), provenance, and errors
that name the file, the key and what was expected."""

from __future__ import annotations

import pytest
from aisci.engine.config import ConfigError, Settings, load_config, parse_override


@pytest.fixture
def no_user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("AISCI_USER_CONFIG", str(tmp_path / "absent-user.toml"))


def test_defaults_are_the_reference_constants():
    s = Settings()
    assert s.ideation.num_ideas == 50 and s.ideation.reflection_rounds == 3
    assert s.novelty.max_rounds == 10 and s.novelty.results_per_query == 10
    assert s.experiment.max_runs == 5 and s.experiment.max_attempts == 4
    assert s.experiment.run_timeout_s == 7200 and s.experiment.stderr_tail_chars == 1500
    assert s.plot.timeout_s == 600 and s.plot.max_attempts == 4
    assert s.writeup.citation_rounds == 20 and s.writeup.chktex_rounds == 5
    assert s.review.ensemble == 5 and s.review.temperature == 0.75
    assert s.review.reflection_rounds == 5


def test_layers_and_origins(tmp_path, monkeypatch):
    user = tmp_path / "user.toml"
    user.write_text('[experiment]\nmax_runs = 3\nrun_timeout_s = 100\n[models]\n'
                    'review = "openai:gpt-4o"\n')
    monkeypatch.setenv("AISCI_USER_CONFIG", str(user))
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "aisci.toml").write_text("[experiment]\nmax_runs = 4\n[budget]\nlab_usd = 12.5\n")
    cfg = load_config(lab, {"experiment.max_attempts": 2})
    s = cfg.settings
    assert (s.experiment.max_runs, s.experiment.run_timeout_s, s.experiment.max_attempts) == (
        4, 100, 2)
    assert s.budget.lab_usd == 12.5 and s.models.for_stage("review") == "openai:gpt-4o"
    assert cfg.origin("experiment.max_runs") == str(lab / "aisci.toml")
    assert cfg.origin("experiment.run_timeout_s") == str(user)
    assert cfg.origin("experiment.max_attempts") == "command line"
    assert cfg.origin("plot.timeout_s") == "default"
    rows = {k: (v, o) for k, v, o in cfg.rows()}
    assert rows["budget.lab_usd"] == (12.5, str(lab / "aisci.toml"))


def test_endpoints_table(tmp_path, no_user_config):
    (tmp_path / "aisci.toml").write_text(
        '[models]\ndefault = "deepseek:deepseek-chat"\n'
        '[llm.endpoints.deepseek]\nbase_url = "https://api.deepseek.com/v1"\n'
        'api_key_env = "DEEPSEEK_API_KEY"\n')
    s = load_config(tmp_path).settings
    assert s.llm.endpoints["deepseek"].api_key_env == "DEEPSEEK_API_KEY"


@pytest.mark.parametrize(("text", "key", "problem"), [
    ("[experiment]\nmax_runz = 3\n", "experiment.max_runz", "unknown key"),
    ("[experiment]\nmax_runs = \"many\"\n", "experiment.max_runs", "valid integer"),
    ("[experiment]\nmax_runs = 0\n", "experiment.max_runs", "greater than or equal to 1"),
    ("[sandbox]\nmode = \"docker\"\n", "sandbox.mode", "'auto', 'bwrap'"),
    ("[models]\ndefault = \"gpt-4o\"\n", "models", "expected 'provider:model'"),
    ("[nonsense]\nx = 1\n", "nonsense", "unknown key"),
])
def test_errors_name_file_key_and_problem(tmp_path, no_user_config, text, key, problem):
    path = tmp_path / "aisci.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    err = info.value
    assert err.source == str(path) and err.key == key and problem in err.problem
    assert str(err).startswith(f"{path}:{key}: ")


def test_bad_toml_names_the_file(tmp_path, no_user_config):
    (tmp_path / "aisci.toml").write_text("[experiment\nmax_runs = 3\n")
    with pytest.raises(ConfigError, match=r"aisci\.toml: invalid TOML"):
        load_config(tmp_path)


def test_command_line_overrides_are_validated(tmp_path, no_user_config):
    assert parse_override("general.template=nanogpt") == ("general.template", "nanogpt")
    assert parse_override("budget.lab_usd=2.5") == ("budget.lab_usd", 2.5)
    with pytest.raises(ConfigError, match="command line:experiment.max_runs:"):
        load_config(tmp_path, {"experiment.max_runs": "lots"})
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_override("nonsense")
