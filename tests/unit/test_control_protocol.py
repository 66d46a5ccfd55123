"""The control channel's wire format: every typed event survives the trip, and what is
not a valid message is named in one line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from aisci.engine import events as ev
from aisci.engine.control import protocol as wire


def sample(cls: type[ev.Event]) -> ev.Event:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "ts" or f.default is not dataclasses.MISSING \
                or f.default_factory is not dataclasses.MISSING:
            continue
        hint = str(f.type)
        if "tuple" in hint:
            values[f.name] = ("line one", "line two ✓")
        elif "int" in hint and "None" in hint:
            values[f.name] = 7
        elif hint.startswith("int"):
            values[f.name] = 3
        elif "float" in hint:
            values[f.name] = 1.5
        elif "bool" in hint:
            values[f.name] = True
        else:
            values[f.name] = f"{f.name} text"
    return cls(**values)


def all_event_types() -> list[type[ev.Event]]:
    out, todo = [], list(ev.Event.__subclasses__())
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


@pytest.mark.parametrize("cls", all_event_types(), ids=lambda c: c.__name__)
def test_every_event_survives_the_wire(cls: type[ev.Event]) -> None:
    event = sample(cls)
    line = wire.encode({"event": wire.event_to_wire(event)})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = wire.event_from_wire(wire.decode(line)["event"])
    assert type(back) is cls
    assert back == event


def test_non_finite_numbers_are_sent_as_null() -> None:
    msg = wire.decode(wire.encode({"id": 1, "ok": True, "result": [float("nan"), 1.0]}))
    assert msg["result"] == [None, 1.0]


@pytest.mark.parametrize(("line", "expected"), [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON list; expected an object"),
    (b'{"v": 99, "id": 1, "op": "ping"}', "protocol version 99"),
    (b'{"id": 1, "op": "ping"}', "protocol version None"),
    (b"\xff\xfe{", "not JSON"),
    (b"x" * (wire.MAX_MESSAGE + 1), "at most"),
])
def test_bad_messages_are_named(line: bytes, expected: str) -> None:
    with pytest.raises(wire.ProtocolError) as err:
        wire.decode(line)
    assert expected in err.value.message
    assert "\n" not in err.value.message


@pytest.mark.parametrize("data", [{"type": "NoSuchEvent", "fields": {}},
                                  {"type": "Event", "fields": {}}, [1], {"type": "Notice"},
                                  {"type": "Notice", "fields": {"level": "info"}}])
def test_events_that_do_not_fit_are_refused(data: Any) -> None:
    with pytest.raises(wire.ProtocolError):
        wire.event_from_wire(data)


def test_errors_keep_message_and_exit_code() -> None:
    body = wire.error_body(wire.RemoteError("no idea 9", hint="see list", exit_code=2))
    assert json.loads(json.dumps(body)) == body
    with pytest.raises(wire.RemoteError) as err:
        wire.raise_error(body)
    assert err.value.message == "no idea 9" and err.value.exit_code == 2
    assert "internal error" in wire.error_body(KeyError("x"))["message"]


def test_a_long_lab_path_gets_a_short_socket_address(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = wire.socket_path(deep)
    assert len(str(path)) > 107
    with wire.socket_address(path) as address:
        assert address.startswith("/proc/self/fd/") and address.endswith("/aisci.sock")
        assert len(address) < 107
    with wire.socket_address(tmp_path / "aisci.sock") as address:
        assert address == str(tmp_path / "aisci.sock")
