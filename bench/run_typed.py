#!/usr/bin/env python3
"""The cost of typed handlers per message, in process (no sockets): what the dispatcher does
with one payload before and after a handler, for a telescope ``control_command`` of ~150 bytes.

Inbound: ``json.loads`` (an untyped handler), ``Model.model_validate_json`` on the JSON text (a
typed handler on the JSON protocol), ``Model.model_validate(json.loads(...))`` (a typed handler
on Socket.IO, and the dict detour). Outbound: skyrelay's ``encode_json`` of a model (written by
``model_dump_json``), of ``model.model_dump(mode="json")`` (the dict detour), and of the plain
dict (an untyped app). Best of 5 repeats, in microseconds per message.

    .venv/bin/python bench/run_typed.py [--number 20000]
"""

from __future__ import annotations

import argparse
import json
import timeit

from pydantic import BaseModel, ConfigDict

from skyrelay.encoding import encode_json


class Parameters(BaseModel):
    direction: str
    duration: int


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    type: str
    telescope_id: str
    timestamp: int
    action: str
    parameters: Parameters
    response_expected: bool = True


PAYLOAD = {"id": "1234567891", "type": "control_command", "telescope_id": "seestar-001",
           "timestamp": 1640995200000, "action": "move",
           "parameters": {"direction": "up", "duration": 1000}, "response_expected": True}


def best(fn, number: int) -> float:
    """Microseconds per call, the best of 5 repeats."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000)
    number = parser.parse_args().number
    text = json.dumps(PAYLOAD, separators=(",", ":"))
    model = Command.model_validate(PAYLOAD)
    rows = [
        ("in: json.loads (untyped)", lambda: json.loads(text)),
        ("in: model_validate_json (typed, JSON protocol)",
         lambda: Command.model_validate_json(text)),
        ("in: model_validate(json.loads) (typed, Socket.IO)",
         lambda: Command.model_validate(json.loads(text))),
        ("out: encode_json(dict) (untyped)", lambda: encode_json(PAYLOAD)),
        ("out: encode_json(model) (model_dump_json)", lambda: encode_json(model)),
        ("out: encode_json(model.model_dump(mode='json')) (dict detour)",
         lambda: encode_json(model.model_dump(mode="json"))),
    ]
    print(f"payload: {len(text)} bytes of JSON; best of 5 x {number}")
    print("| step | us/message |\n|---|---|")
    for name, fn in rows:
        print(f"| {name} | {best(fn, number):.2f} |")


if __name__ == "__main__":
    main()
