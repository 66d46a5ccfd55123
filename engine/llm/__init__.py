"""Provider-neutral LLM layer: one async interface over Anthropic, OpenAI(-compatible)
and scripted (cassette) providers, with bounded retries, cost recording and budgets."""

from aisci.engine.llm.base import (
    LLMError,
    LLMRequest,
    LLMResponse,
    Message,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)
from aisci.engine.llm.client import BudgetExceeded, LLMClient, StageLLM

__all__ = [
    "BudgetExceeded",
    "LLMClient",
    "LLMError",
    "LLMRequest",
    "LLMResponse",
    "Message",
    "StageLLM",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "Usage",
]
