"""Tolerant reading of a model's JSON reply, and precise feedback when it still fails.

Real models wrap the object in prose or code fences (any language tag), leave trailing
commas, answer with Python literals (``True``, single quotes), nest the object under one
key (``{"review": {...}}``) or in a one-element list, spell field names in another case
(``title``, ``ethical_concerns``) and give numbers as text (``"7"``, ``"7/10"``). All of
that is read as meant. What cannot be read as meant (a missing field, a score out of its
range, a reply cut at ``max_tokens``, a refusal) raises :class:`MalformedOutput` whose
message says exactly what to fix; the client sends it back to the model as the repair
request.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, TypeVar, get_args, get_origin

from aisci.engine.llm.base import MalformedOutput
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

MAX_REPLY_CHARS = 200_000
"""Longer replies are cut before parsing (bounds the scans below)."""

_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_SCORE_TEXT = re.compile(r"^\s*(-?\d+(?:\.0+)?)\s*(?:/\s*\d+)?\s*$")


def _balanced_objects(text: str, limit: int = 20) -> list[str]:
    """Top-level ``{...}`` spans of ``text`` (string-aware), in order, at most ``limit``."""
    out: list[str] = []
    depth = 0
    start = -1
    in_str = False
    esc = False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"' and depth > 0:
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                out.append(text[start:i + 1])
                if len(out) >= limit:
                    break
    return out


def _strip_trailing_commas(s: str) -> str:
    """Drop commas before ``}``/``]`` outside strings."""
    out: list[str] = []
    in_str = False
    esc = False
    i = 0
    while i < len(s):
        ch = s[i]
        if in_str:
            out.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            out.append(ch)
        elif ch == ",":
            j = i + 1
            while j < len(s) and s[j] in " \t\r\n":
                j += 1
            if j < len(s) and s[j] in "}]":
                i += 1
                continue
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _loads_tolerant(candidate: str) -> Any:
    """json.loads, then without trailing commas, then as a Python literal."""
    try:
        return json.loads(candidate)
    except json.JSONDecodeError as exc:
        first = exc
    cleaned = _strip_trailing_commas(candidate)
    if cleaned != candidate:
        try:
            return json.loads(cleaned)
        except json.JSONDecodeError:
            pass
    try:
        value = ast.literal_eval(cleaned)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise first from None
    if isinstance(value, dict | list):
        return json.loads(json.dumps(value, default=str))
    raise first


_MAX_CANDIDATES = 24


def _parsed_candidates(text: str) -> list[Any]:
    """Every JSON value the reply may mean, most likely first: the fenced blocks (last
    first), the span from the first ``{`` to the last ``}``, the balanced objects (last
    first). MalformedOutput when none of them parses."""
    text = text[:MAX_REPLY_CHARS]
    candidates = list(reversed(_FENCE.findall(text)))[:_MAX_CANDIDATES]
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        candidates.append(text[start:end + 1])
    candidates.extend(reversed(_balanced_objects(text)))
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        candidates.insert(0, stripped)
    if not candidates:
        if start != -1:
            raise MalformedOutput("the JSON object is not closed (the reply ends before its "
                                  "final '}': was it cut off? answer with a shorter object)")
        raise MalformedOutput("no JSON object found in the reply")
    last_err = ""
    out: list[Any] = []
    for c in candidates:
        try:
            out.append(_loads_tolerant(c))
        except json.JSONDecodeError as exc:
            if not last_err:
                last_err = f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        except RecursionError:
            last_err = last_err or "invalid JSON (nested too deeply)"
    if not out:
        raise MalformedOutput(last_err)
    return out


def extract_json(text: str) -> Any:
    """The JSON object in a reply: the last fenced block that parses, else the whole
    span from the first ``{`` to the last ``}``, else the last balanced object."""
    return _parsed_candidates(text)[0]


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def _int_field(annotation: Any) -> bool:
    if annotation is int:
        return True
    return get_origin(annotation) is not None and int in get_args(annotation) \
        and str not in get_args(annotation)


def normalise(data: Any, schema: type[BaseModel]) -> Any:
    """Read ``data`` as meant for ``schema``: unwrap a one-element list or a single
    wrapping key, match field names regardless of case and separators, read numbers
    given as text. Leaves anything it does not recognise for validation to report."""
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        return data
    names: dict[str, str] = {}
    for name, f in schema.model_fields.items():
        target = f.alias or name
        names.setdefault(_norm(name), target)
        if f.alias:
            names.setdefault(_norm(f.alias), target)
    known = {f.alias or n for n, f in schema.model_fields.items()} | set(schema.model_fields)
    if len(data) == 1 and not (set(data) & known):
        (inner,) = data.values()
        if isinstance(inner, dict) and set(map(_norm, inner)) & set(names):
            data = inner
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = k if k in known else names.get(_norm(str(k)), k)
        if key in out and k not in known:
            continue  # the exact spelling wins over a variant
        out[key] = v
    for name, f in schema.model_fields.items():
        key = f.alias or name
        value = out.get(key)
        if isinstance(value, str) and _int_field(f.annotation):
            m = _SCORE_TEXT.match(value)
            if m:
                out[key] = int(float(m.group(1)))
    return out


def parse_json_reply(text: str, schema: type[T], *, stop_reason: str | None = None) -> T:
    """The reply as ``schema``, or MalformedOutput saying precisely what to fix."""
    if not text.strip():
        raise MalformedOutput("the reply is empty: answer with the JSON object")
    try:
        values = _parsed_candidates(text)
    except MalformedOutput as exc:
        if stop_reason in ("max_tokens", "length"):
            raise MalformedOutput(f"the reply was cut off at the output limit ({exc}); "
                                  "answer again, shorter, with the complete JSON object") \
                from None
        raise
    # The most likely value that fits the schema: a valid answer followed by prose that
    # quotes another object ("... or as {"format": "yaml"}") is still the answer.
    first: ValidationError | None = None
    for data in values:
        try:
            return schema.model_validate(normalise(data, schema))
        except ValidationError as exc:
            first = first or exc
    assert first is not None  # at least one value parsed
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
        + (f" (got {e['input']!r:.60})" if e.get("type") != "missing" and
           not isinstance(e.get("input"), dict) else "")
        for e in first.errors()[:6])
    raise MalformedOutput(f"JSON does not match the {schema.__name__} schema: {problems}")
