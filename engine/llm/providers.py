"""Turns a model spec (``provider:model``) into a provider instance.

The provider modules are imported when a spec names them: they import the vendor SDKs,
heavy to import (anthropic about 2 s, openai about 1 s) and unused in a scripted lab."""

from __future__ import annotations

from aisci.engine.config import Settings
from aisci.engine.llm.base import BadRequest, Provider
from aisci.engine.llm.scripted import ScriptedProvider


def make_provider(spec: str, settings: Settings) -> Provider:
    if ":" not in spec:
        raise BadRequest(f"model {spec!r}: expected 'provider:model', e.g. anthropic:claude-sonnet-5-5")
    kind, model = spec.split(":", 1)
    if kind == "scripted":
        return ScriptedProvider(model)
    if kind == "anthropic":
        from aisci.engine.llm.anthropic_provider import AnthropicProvider  # heavy SDK
        return AnthropicProvider(model, settings.llm)
    if kind == "openai":
        from aisci.engine.llm.openai_provider import OpenAIProvider  # heavy SDK
        return OpenAIProvider(model, settings.llm)
    endpoint = settings.llm.endpoints.get(kind)
    if endpoint is not None:
        from aisci.engine.llm.openai_provider import OpenAIProvider  # heavy SDK
        return OpenAIProvider(model, settings.llm, provider_name=kind,
                              base_url=endpoint.base_url, api_key_env=endpoint.api_key_env)
    known = ", ".join(["anthropic", "openai", "scripted", *settings.llm.endpoints])
    raise BadRequest(f"model {spec!r}: unknown provider {kind!r} (known: {known}; add "
                     f"[llm.endpoints.{kind}] base_url=... for an OpenAI-compatible server)")
