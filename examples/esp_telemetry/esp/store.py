"""The telemetry store: every reading and every alert, in SQLite.

The seed stores readings in TimescaleDB; SQLite keeps the example self-contained. One
connection, used under a lock, serves the app's request threads. Several instances on one
host may share a database file (WAL mode lets readers and one writer work side by side).
"""

from __future__ import annotations

import sqlite3
import threading

# The seed's telemetry fields, in the order its payloads list them.
FIELDS = ("flow_rate", "pip", "motor_current", "motor_temp", "vibration", "vsd_frequency",
          "flow_variance", "torque", "gor")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS telemetry (
    telemetry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    well_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    {", ".join(f"{name} REAL" for name in FIELDS)}
);
CREATE INDEX IF NOT EXISTS telemetry_by_well ON telemetry (well_id, telemetry_id);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id INTEGER PRIMARY KEY AUTOINCREMENT,
    telemetry_id INTEGER NOT NULL REFERENCES telemetry (telemetry_id),
    well_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    type TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL
);
"""


class Store:
    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def add_reading(self, well_id: str, timestamp: str, values: dict[str, float]) -> int:
        """Stores one reading (absent fields as NULL) and returns its telemetry_id."""
        names = [name for name in FIELDS if name in values]
        sql = (f"INSERT INTO telemetry (well_id, timestamp{''.join(', ' + n for n in names)}) "
               f"VALUES (?, ?{', ?' * len(names)})")
        with self._lock:
            cursor = self._db.execute(sql, [well_id, timestamp, *(values[n] for n in names)])
        assert cursor.lastrowid is not None  # an INSERT into a rowid table always has one
        return cursor.lastrowid

    def add_alert(self, telemetry_id: int, well_id: str, timestamp: str, alert: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO alerts (telemetry_id, well_id, timestamp, type, severity, message,"
                " value, threshold) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (telemetry_id, well_id, timestamp, alert["type"], alert["severity"],
                 alert["message"], alert["value"], alert["threshold"]))

    def readings(self, well_id: str, limit: int = 100) -> list[dict]:
        """The well's latest readings, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM telemetry WHERE well_id = ? ORDER BY telemetry_id DESC LIMIT ?",
                (well_id, limit)).fetchall()
        return [{k: row[k] for k in row.keys() if row[k] is not None} for row in rows]

    def alerts(self, well_id: str, limit: int = 100) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM alerts WHERE well_id = ? ORDER BY alert_id DESC LIMIT ?",
                (well_id, limit)).fetchall()
        return [dict(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
