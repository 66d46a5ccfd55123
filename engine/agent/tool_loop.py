"""The bounded conversation loop in which a model edits files through tool calls.

Each turn is one LLM call named ``<step>/turn-<i>``; tool calls are executed and their
results sent back, until the model answers without tool calls or ``max_turns`` is hit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aisci.engine.agent.edit_tools import EditTools
from aisci.engine.llm.base import LLMRequest, Message, TextCallback, ToolCall, ToolResult, ToolSpec
from aisci.engine.llm.client import StageLLM

ExtraTool = tuple[ToolSpec, Callable[[ToolCall], ToolResult]]


@dataclass
class ToolLoopResult:
    text: str
    """The model's final text (the turn without tool calls)."""
    messages: list[Message]
    turns: int
    exhausted: bool
    """True when max_turns ended the loop before the model finished."""
    changed: set[str] = field(default_factory=set)


async def run_tool_loop(llm: StageLLM, *, system: str, messages: list[Message],
                        tools: EditTools | None, step: str, max_turns: int,
                        extra_tools: list[ExtraTool] | None = None,
                        cache_prefix_messages: int = 1, temperature: float | None = None,
                        on_text: TextCallback | None = None) -> ToolLoopResult:
    specs = list(tools.specs()) if tools else []
    handlers: dict[str, Callable[[ToolCall], ToolResult]] = {}
    for spec, handler in extra_tools or []:
        specs.append(spec)
        handlers[spec.name] = handler
    convo = list(messages)
    text = ""
    for turn in range(1, max_turns + 1):
        req = LLMRequest(system=system, messages=convo, tools=specs, temperature=temperature,
                         step=f"{step}/turn-{turn}", cache_prefix_messages=cache_prefix_messages)
        resp = await llm.chat(req, on_text=on_text)
        convo.append(resp.as_message())
        text = resp.text
        if not resp.tool_calls:
            return ToolLoopResult(text, convo, turn, False, set(tools.changed) if tools else set())
        results = []
        for tc in resp.tool_calls:
            if tc.name in handlers:
                results.append(handlers[tc.name](tc))
            elif tools is not None and tools.handles(tc.name):
                results.append(tools.call(tc))
            else:
                results.append(ToolResult(tc.id, f"error: unknown tool {tc.name!r}", True))
        convo.append(Message(role="user", tool_results=tuple(results)))
    return ToolLoopResult(text, convo, max_turns, True, set(tools.changed) if tools else set())
