"""The chaos model: recorded answers perturbed the ways real models misbehave.

Each class is one kind of misbehaviour; ``all`` draws one class per perturbed answer.
Which answers are perturbed, and how, depends only on the seed, the request key
(``<stage>/<step>``) and how many times that key was asked, so a run is reproducible.
Classes that do not apply to an answer (``trailing_commas`` on a reply with no JSON, a
tool-call class on a text answer) leave it unchanged.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

from aisci.engine.llm.base import BadRequest

CLASSES = (
    "prose",            # JSON wrapped in prose
    "fences",           # JSON in a code fence with an odd language tag
    "trailing_commas",  # a trailing comma before closing brackets
    "renamed_fields",   # keys in another case / with underscores
    "dropped_field",    # one field missing
    "wrong_types",      # numbers as text, lists as one string
    "out_of_range",     # a score far outside its range
    "refusal",          # "I can't help with that."
    "empty",            # an empty answer
    "truncated",        # cut at max_tokens, mid-JSON
    "bad_old_text",     # replace_text whose old text is not in the file
    "forbidden_file",   # an edit to a file the stage may not touch
    "latex",            # LaTeX with an unbalanced brace and an undefined macro
)

_JSON_OBJ = re.compile(r"\{.*\}", re.DOTALL)


@dataclass
class Chaos:
    kind: str = "all"
    seed: int = 0
    rate: float = 1.0
    """Share of answers perturbed (0..1)."""
    _asked: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind != "all" and self.kind not in CLASSES:
            raise BadRequest(f"chaos class {self.kind!r}: expected 'all' or one of "
                             f"{', '.join(CLASSES)}")
        if not 0.0 <= self.rate <= 1.0:
            raise BadRequest(f"chaos rate {self.rate}: expected a number from 0 to 1")

    def perturb(self, key: str, entry: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The entry as a misbehaving model would answer, and its stop reason (or None)."""
        n = self._asked.get(key, 0)
        self._asked[key] = n + 1
        rng = random.Random(f"{self.seed}:{key}:{n}")
        if rng.random() >= self.rate:
            return entry, None
        kind = rng.choice(CLASSES) if self.kind == "all" else self.kind
        out = json.loads(json.dumps(entry))
        stop = _apply(kind, out, rng)
        return out, stop


def parse_chaos_spec(name: str) -> tuple[str, Chaos | None]:
    """``demo@chaos=fences,seed=3,rate=0.5`` -> (``demo``, Chaos(...))."""
    if "@" not in name:
        return name, None
    base, _, opts = name.partition("@")
    values: dict[str, str] = {}
    for part in filter(None, opts.split(",")):
        k, eq, v = part.partition("=")
        if not eq or k not in ("chaos", "seed", "rate"):
            raise BadRequest(f"scripted:{name}: expected @chaos=CLASS[,seed=N][,rate=P], "
                             f"got {part!r}")
        values[k] = v
    try:
        return base, Chaos(values.get("chaos", "all"), int(values.get("seed", "0")),
                           float(values.get("rate", "1")))
    except ValueError:
        raise BadRequest(f"scripted:{name}: seed must be an integer and rate a number") \
            from None


def _json_span(text: str) -> tuple[int, int, Any] | None:
    m = _JSON_OBJ.search(text)
    if not m:
        return None
    try:
        return m.start(), m.end(), json.loads(m.group(0))
    except json.JSONDecodeError:
        return None


def _with_json(text: str, rng: random.Random, change: Any) -> str:
    span = _json_span(text)
    if span is None or not isinstance(span[2], dict):
        return text
    start, end, obj = span
    new = change(obj, rng)
    body = new if isinstance(new, str) else json.dumps(new, indent=2)
    return text[:start] + body + text[end:]


def _drop(obj: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    if obj:
        obj.pop(rng.choice(sorted(obj)))
    return obj


def _rename(obj: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    return {(k.lower().replace(" ", "_") if rng.random() < 0.7 else k.upper()): v
            for k, v in obj.items()}


def _types(obj: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, bool):
            out[k] = v
        elif isinstance(v, int):
            out[k] = rng.choice([str(v), f"{v}/10", float(v)])
        elif isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            out[k] = "; ".join(v)
        else:
            out[k] = v
    return out


def _range(obj: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    ints = [k for k, v in obj.items() if isinstance(v, int) and not isinstance(v, bool)]
    if ints:
        obj[rng.choice(ints)] = rng.choice([0, -1, 11, 42, 100])
    return obj


def _commas(obj: dict[str, Any], rng: random.Random) -> str:
    text = json.dumps(obj, indent=2)
    return re.sub(r"(\S)(\n\s*[}\]])", r"\1,\2", text)


def _apply(kind: str, entry: dict[str, Any], rng: random.Random) -> str | None:
    text = str(entry.get("text", ""))
    calls: list[dict[str, Any]] = entry.get("tool_calls") or []
    if kind == "prose":
        if _json_span(text):
            entry["text"] = ("Certainly! After thinking about it carefully, here is my answer "
                             "{as requested}:\n\n" + text.replace("```json", "").replace("```", "")
                             + "\n\nI hope this helps; let me know if you want changes.")
    elif kind == "fences":
        span = _json_span(text)
        if span:
            lang = rng.choice(["", "JSON", "javascript", "jsonc"])
            entry["text"] = f"```{lang}\n{json.dumps(span[2], indent=2)}\n```"
    elif kind == "trailing_commas":
        entry["text"] = _with_json(text, rng, _commas)
    elif kind == "renamed_fields":
        entry["text"] = _with_json(text, rng, _rename)
    elif kind == "dropped_field":
        entry["text"] = _with_json(text, rng, _drop)
    elif kind == "wrong_types":
        entry["text"] = _with_json(text, rng, _types)
    elif kind == "out_of_range":
        entry["text"] = _with_json(text, rng, _range)
    elif kind == "refusal":
        entry["text"] = "I'm sorry, but I can't help with that request."
        entry["tool_calls"] = []
    elif kind == "empty":
        entry["text"] = ""
        entry["tool_calls"] = []
    elif kind == "truncated":
        if text:
            entry["text"] = text[:max(1, int(len(text) * rng.uniform(0.3, 0.8)))]
            entry["tool_calls"] = []
            return "max_tokens"
    elif kind == "bad_old_text":
        for c in calls:
            args = c.get("arguments") or {}
            for k in ("old_text", "old", "old_str"):
                if isinstance(args.get(k), str) and args[k]:
                    args[k] = args[k].replace(" ", "  ", 1) + " # not in the file"
    elif kind == "forbidden_file":
        for c in calls:
            args = c.get("arguments") or {}
            if isinstance(args.get("path"), str):
                args["path"] = rng.choice(["../aisci.toml", "run_0/final_info.json",
                                           "/etc/passwd", ".git/config"])
    elif kind == "latex":
        for c in calls:
            args = c.get("arguments") or {}
            for k, v in list(args.items()):
                if isinstance(v, str) and "\\" in v:
                    broken = v[::-1].replace("}", "", 1)[::-1]
                    args[k] = broken + " \\undefinedmacro{x}"
    return None
