"""The producer's NaN policy (issue 17 item 2): nan="null" (the default) publishes NaN,
infinities and pandas' NA/NaT as null, so a pandas frame with gaps publishes; nan="error"
raises ValueError naming the field before anything is sent. Received by a real client."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import pytest

from skyrelay import AsyncProducer, Producer
from skyrelay.testing import metric

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

TOKEN = "t0ken-for-producer-nan"


@pytest.fixture
def server(skyrelay_server_factory):
    return skyrelay_server_factory(publish_token=TOKEN)


def frame_with_gaps():
    return pd.DataFrame({
        "well": ["W1", "W2", None],
        "flow": [1.5, np.nan, np.inf],
        "count": pd.array([1, None, 3], dtype="Int64"),
        "at": pd.to_datetime(["2026-01-01", None, "2026-01-03"], utc=True),
        "level": pd.array([0.5, None, -np.inf], dtype="Float64"),
    })


ROWS = [
    {"well": "W1", "flow": 1.5, "count": 1, "at": "2026-01-01T00:00:00+00:00", "level": 0.5},
    {"well": "W2", "flow": None, "count": None, "at": None, "level": None},
    {"well": None, "flow": None, "count": 3, "at": "2026-01-03T00:00:00+00:00", "level": None},
]


def test_a_frame_with_gaps_publishes_as_null(server, skyrelay_client):
    client = skyrelay_client(server)
    client.subscribe("lab")
    frame = frame_with_gaps()
    with Producer(server.http_url, token=TOKEN) as producer:
        producer.emit("frame", frame, to="lab")
        with producer.batch() as batch:
            for _, row in frame.iterrows():
                batch.emit("row", row, to="lab")
        producer.emit("scalars", {"nan": float("nan"), "inf": -math.inf, "na": pd.NA,
                                  "nat": pd.NaT, "f32": np.float32("nan"),
                                  "array": np.array([1.0, np.nan, np.inf]),
                                  "series": pd.Series([2.0, None])}, to="lab")
    assert client.expect("frame") == ROWS
    assert [client.expect("row") for _ in ROWS] == ROWS
    assert client.expect("scalars") == {"nan": None, "inf": None, "na": None, "nat": None,
                                        "f32": None, "array": [1.0, None, None],
                                        "series": {"0": 2.0, "1": None}}


@dataclasses.dataclass
class Sample:
    well: str
    readings: list


def test_nan_error_names_the_field_and_sends_nothing(server, skyrelay_client):
    client = skyrelay_client(server)
    client.subscribe("lab")
    cases = [
        (frame_with_gaps(), r'data\[1\]\["flow"\] is nan'),
        (frame_with_gaps().iloc[1], r'data\["flow"\] is nan'),
        ({"ok": 1, "deep": [{"x": [0.0, float("-inf")]}]},
         r'data\["deep"\]\[0\]\["x"\]\[1\] is -inf'),
        ({"when": pd.NaT}, r'data\["when"\] is pandas.NaT'),
        ([pd.NA], r"data\[0\] is pandas.NA"),
        (Sample("W1", [1.0, np.float32("nan")]), r'data\["readings"\]\[1\] is nan'),
        (np.array([[1.0], [np.nan]]), r"data\[1\]\[0\] is nan"),
    ]
    with Producer(server.http_url, token=TOKEN, nan="error") as producer:
        for data, where in cases:
            with pytest.raises(ValueError, match=where + ", which is not JSON"):
                producer.emit("bad", data, to="lab")
        with pytest.raises(ValueError, match=r'data\["flow"\] is inf'):
            with producer.batch() as batch:
                batch.emit("good", 1, to="lab")
                batch.emit("bad", {"flow": float("inf")}, to="lab")
        # Finite data goes out as usual under nan="error".
        assert producer.emit("fine", {"flow": 2.5}, to="lab").seq == 1
    assert metric(server, 'skyrelay_received_messages_total{transport="publish"}') == 1
    assert client.expect("fine") == {"flow": 2.5}
    client.expect_nothing(0.2, "event")


def test_async_producer_has_the_same_policy(server, skyrelay_client):
    client = skyrelay_client(server)
    client.subscribe("lab")

    async def publish():
        async with AsyncProducer(server.http_url, token=TOKEN) as producer:
            await producer.emit("frame", frame_with_gaps(), to="lab")
        async with AsyncProducer(server.http_url, token=TOKEN, nan="error") as producer:
            with pytest.raises(ValueError, match=r"data\[2\]\[\"flow\"\] is inf"):
                await producer.emit("frame", pd.DataFrame({"flow": [1.0, 2.0, np.inf]}),
                                    to="lab")

    asyncio.run(publish())
    assert client.expect("frame") == ROWS
    client.expect_nothing(0.2, "event")


def complex_parts(value):
    if isinstance(value, complex):
        return [value.real, value.imag * float("inf")]
    raise TypeError


def test_the_policy_is_checked_and_bytes_are_not_rewritten(server):
    with pytest.raises(ValueError, match="nan must be one of 'null', 'error'"):
        Producer(server.http_url, nan="string")
    with Producer(server.http_url, token=TOKEN) as producer:
        # Pre-encoded JSON is the caller's text: NaN in it is refused, not turned into null.
        with pytest.raises(ValueError, match="valid UTF-8 JSON"):
            producer.emit("raw", b'{"flow": NaN}')
        # A user's default= hook still runs, and its NaN follows the policy.
        with Producer(server.http_url, token=TOKEN, default=complex_parts) as other:
            assert other.emit("c", {"z": 1j}).delivered == 0
    assert metric(server, 'skyrelay_received_messages_total{transport="publish"}') == 1
