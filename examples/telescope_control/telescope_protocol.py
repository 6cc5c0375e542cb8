"""The telescope-control wire protocol (S2): every frame, both ways, is

    {"id": str, "type": MessageType, "telescope_id": str | null, "timestamp": epoch ms,
     "payload": {...}}

The models validate what clients send; skyrelay's envelope (app.ENVELOPE) writes what the
server sends, in C++, from the same field names.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class MessageType(str, Enum):
    STATUS_UPDATE = "status_update"
    TELESCOPE_DISCOVERED = "telescope_discovered"
    TELESCOPE_LOST = "telescope_lost"
    CONTROL_COMMAND = "control_command"
    COMMAND_RESPONSE = "command_response"
    HEARTBEAT = "heartbeat"
    ERROR = "error"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


# What a telescope can be asked to do, with the parameters each action takes.
CommandAction = Literal["move", "goto", "park", "unpark", "set_gain", "start_tracking",
                        "stop_tracking", "start_exposure"]


class CommandPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: CommandAction
    parameters: dict[str, Any] = Field(default_factory=dict)
    response_expected: bool = True
    # How long the telescope may take before the server answers with a timeout (ms).
    timeout_ms: int = Field(default=10_000, ge=1, le=120_000)


class ControlCommand(BaseModel):
    """A client's control_command frame, whole."""

    id: str = Field(min_length=1, max_length=64)
    type: Literal["control_command"]
    telescope_id: str | None = Field(default=None, max_length=64)
    timestamp: int | float | None = None
    payload: CommandPayload


class MoveParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    direction: Literal["up", "down", "left", "right"]
    duration: int = Field(ge=1, le=60_000)  # ms


class GotoParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ra: float = Field(ge=0, lt=24)     # hours
    dec: float = Field(ge=-90, le=90)  # degrees


class GainParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gain: int = Field(ge=0, le=300)


class ExposureParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(gt=0, le=600)


# The model each action's parameters must satisfy (actions without one take none).
PARAMETERS: dict[str, type[BaseModel]] = {
    "move": MoveParameters, "goto": GotoParameters, "set_gain": GainParameters,
    "start_exposure": ExposureParameters,
}
