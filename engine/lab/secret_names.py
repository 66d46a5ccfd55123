"""The one rule for which environment variables are secrets: such variables never reach
code the engine runs for an idea or a template, nor the engine's own git commands."""

from __future__ import annotations

import re

_SECRET_WORDS = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT|PWD")
_SECRET_PREFIXES = (
    "ANTHROPIC_", "OPENAI_", "AWS_", "HF_", "HUGGING", "GOOGLE_", "GCP_", "GCLOUD_", "AZURE_",
    "GITHUB_", "GH_", "GITLAB_", "S2_", "WANDB_", "COHERE_", "MISTRAL_", "DEEPSEEK_",
    "OPENROUTER_", "GROQ_", "TOGETHER_", "SSH_", "GPG_", "GNUPG", "DOCKER_", "NPM_", "PYPI_",
    "TWINE_", "SLACK_", "DATABASE_", "DB_", "KUBE",
)


def is_secret_name(name: str) -> bool:
    """True for names that look like credentials."""
    upper = name.upper()
    return bool(_SECRET_WORDS.search(upper)) or upper.startswith(_SECRET_PREFIXES)
