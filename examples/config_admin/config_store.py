"""The config admin service's store: platforms, feature flags, packages (which bundle platforms
and features), clients (each on one package), an activity log and clients' metric reports, in
one SQLite file.

Several app instances on one machine share the file (WAL mode, a busy timeout); every change
is one transaction that also writes the activity log and bumps ``config_version``. Each call
opens its own connection, so any thread may call any method.

A change returns what the app needs to broadcast it: the entity as clients see it, the fields
that changed (``{field: {"old": ..., "new": ...}}``) and the keys of the clients it affects.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

ENTITY_TYPES = ("platform", "feature", "package")
METRIC_REPORTS_KEPT = 100  # per client: older reports are deleted as new ones arrive

SCHEMA = """
CREATE TABLE IF NOT EXISTS platforms (
    id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1, config TEXT NOT NULL DEFAULT '{}', updated_at TEXT);
CREATE TABLE IF NOT EXISTS features (
    id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', enabled INTEGER NOT NULL DEFAULT 1, updated_at TEXT);
CREATE TABLE IF NOT EXISTS packages (
    id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
    price_cents INTEGER NOT NULL DEFAULT 0, updated_at TEXT);
CREATE TABLE IF NOT EXISTS package_platforms (
    package_id INTEGER NOT NULL REFERENCES packages(id),
    platform_id INTEGER NOT NULL REFERENCES platforms(id), PRIMARY KEY (package_id, platform_id));
CREATE TABLE IF NOT EXISTS package_features (
    package_id INTEGER NOT NULL REFERENCES packages(id),
    feature_id INTEGER NOT NULL REFERENCES features(id), PRIMARY KEY (package_id, feature_id));
CREATE TABLE IF NOT EXISTS clients (
    id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
    package_id INTEGER NOT NULL REFERENCES packages(id));
CREATE TABLE IF NOT EXISTS activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, entity_type TEXT, entity_id INTEGER, details TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS client_metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT, client_id INTEGER NOT NULL, ts TEXT NOT NULL,
    data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# The demo data a new store starts with: (key, name) rows, and which package has what.
DEMO_PLATFORMS = [("web", "Web"), ("ios", "iOS"), ("android", "Android")]
DEMO_FEATURES = [("dark_mode", "Dark mode"), ("export_csv", "CSV export"),
                 ("sso", "Single sign-on"), ("audit_log", "Audit log"),
                 ("beta_dashboard", "Beta dashboard")]
DEMO_PACKAGES = {  # key: (name, price in cents, platform keys, feature keys)
    "basic": ("Basic", 900, ["web"], ["dark_mode"]),
    "pro": ("Pro", 2900, ["web", "ios", "android"], ["dark_mode", "export_csv", "beta_dashboard"]),
    "enterprise": ("Enterprise", 9900, ["web", "ios", "android"],
                   ["dark_mode", "export_csv", "sso", "audit_log", "beta_dashboard"]),
}
DEMO_CLIENTS = [("acme", "Acme Corp", "pro"), ("globex", "Globex", "basic"),
                ("initech", "Initech", "enterprise")]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NotFound(LookupError):
    def __init__(self, entity_type: str, ident: Any) -> None:
        super().__init__(f"no {entity_type} {ident}")
        self.entity_type = entity_type


class Store:
    def __init__(self, path: str) -> None:
        self.path = path

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            # A writer takes the lock first, so two instances never both read, then write.
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def init(self, demo: bool = True) -> None:
        """Creates the tables, and fills an empty store with the demo data when `demo`."""
        db = sqlite3.connect(self.path, timeout=10.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        finally:
            db.close()
        with self._db(write=True) as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('config_version', 1)")
            if demo and db.execute("SELECT COUNT(*) FROM packages").fetchone()[0] == 0:
                _fill_demo(db)

    # -- reads -----------------------------------------------------------------------------

    def platforms(self) -> list[dict[str, Any]]:
        with self._db() as db:
            return [_platform(r) for r in db.execute("SELECT * FROM platforms ORDER BY id")]

    def features(self) -> list[dict[str, Any]]:
        with self._db() as db:
            return [_feature(r) for r in db.execute("SELECT * FROM features ORDER BY id")]

    def packages(self) -> list[dict[str, Any]]:
        with self._db() as db:
            return [_package(db, r) for r in db.execute("SELECT * FROM packages ORDER BY id")]

    def clients(self) -> list[dict[str, Any]]:
        with self._db() as db:
            return [dict(r) for r in db.execute("SELECT * FROM clients ORDER BY id")]

    def entity(self, entity_type: str, entity_id: int) -> dict[str, Any]:
        with self._db() as db:
            return _entity(db, entity_type, entity_id)

    def client_view(self, key: str) -> dict[str, Any]:
        """What a client sees: its package, the package's platforms and features (each with
        its `enabled` flag) and the config version. Raises NotFound for an unknown key."""
        with self._db() as db:
            row = db.execute("SELECT * FROM clients WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise NotFound("client", key)
            package = _entity(db, "package", row["package_id"])
            return {"client_id": row["id"], "client": row["key"], "name": row["name"],
                    "package": {k: package[k] for k in ("id", "key", "name")},
                    "platforms": _rows(db, _PACKAGE_PLATFORMS, row["package_id"], _platform),
                    "features": _rows(db, _PACKAGE_FEATURES, row["package_id"], _feature),
                    "config_version": _version(db)}

    def clients_of_package(self, package_id: int) -> list[str]:
        with self._db() as db:
            return _client_keys(db, "SELECT key FROM clients WHERE package_id = ?", package_id)

    def activity(self, limit: int = 20, before_id: int | None = None) -> list[dict[str, Any]]:
        """The newest entries first, those older than `before_id` when given."""
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM activity WHERE id < ? ORDER BY id DESC LIMIT ?",
                (before_id if before_id is not None else 2**62, limit))
            return [_activity(r) for r in rows]

    def summary(self) -> dict[str, Any]:
        with self._db() as db:
            def count(sql: str) -> int:
                return db.execute(sql).fetchone()[0]

            return {"platforms": count("SELECT COUNT(*) FROM platforms"),
                    "platforms_enabled": count("SELECT COUNT(*) FROM platforms WHERE enabled"),
                    "features": count("SELECT COUNT(*) FROM features"),
                    "features_enabled": count("SELECT COUNT(*) FROM features WHERE enabled"),
                    "packages": count("SELECT COUNT(*) FROM packages"),
                    "clients": count("SELECT COUNT(*) FROM clients"),
                    "activity_entries": count("SELECT COUNT(*) FROM activity"),
                    "metric_reports": count("SELECT COUNT(*) FROM client_metrics"),
                    "config_version": _version(db)}

    # -- changes ---------------------------------------------------------------------------

    def change(self, entity_type: str, entity_id: int, fields: dict[str, Any],
               actor: str, action: str = "update") -> tuple[dict, dict, list[str], int]:
        """Applies `fields` to a platform, feature or package (a package's `platforms` and
        `features` are lists of keys); `action` "toggle" flips `enabled` instead. Returns
        (entity after, changes, keys of the clients whose package has the entity, the config
        version after it)."""
        with self._db(write=True) as db:
            before = _entity(db, entity_type, entity_id)
            if action == "toggle":
                fields = {"enabled": not before["enabled"]}
            _apply(db, entity_type, entity_id, fields)
            after = _entity(db, entity_type, entity_id)
            changes = {k: {"old": before[k], "new": after[k]}
                       for k in fields if before[k] != after[k]}
            if changes:
                _log(db, actor, f"{entity_type}.{action}", entity_type, entity_id,
                     {"changes": changes})
                _bump(db)
            return after, changes, _affected(db, entity_type, entity_id), _version(db)

    def assign_package(self, client_id: int, package_id: int, actor: str) -> dict[str, Any]:
        """Moves a client to another package; returns the client row with the old package."""
        with self._db(write=True) as db:
            row = db.execute("SELECT * FROM clients WHERE id = ?", (client_id,)).fetchone()
            if row is None:
                raise NotFound("client", client_id)
            _entity(db, "package", package_id)  # raises NotFound
            db.execute("UPDATE clients SET package_id = ? WHERE id = ?", (package_id, client_id))
            details = {"client": row["key"], "old_package_id": row["package_id"],
                       "package_id": package_id}
            _log(db, actor, "client.assign_package", "client", client_id, details)
            _bump(db)
            return {**dict(row), "package_id": package_id,
                    "old_package_id": row["package_id"]}

    def log(self, actor: str, action: str, details: dict[str, Any],
            entity_type: str | None = None, entity_id: int | None = None) -> dict[str, Any]:
        with self._db(write=True) as db:
            entry_id = _log(db, actor, action, entity_type, entity_id, details)
            return _activity(db.execute("SELECT * FROM activity WHERE id = ?",
                                        (entry_id,)).fetchone())

    def add_metrics(self, client_key: str, metrics: dict[str, float]) -> None:
        with self._db(write=True) as db:
            row = db.execute("SELECT id FROM clients WHERE key = ?", (client_key,)).fetchone()
            if row is None:
                raise NotFound("client", client_key)
            db.execute("INSERT INTO client_metrics (client_id, ts, data) VALUES (?, ?, ?)",
                       (row["id"], now_iso(), json.dumps(metrics)))
            db.execute("DELETE FROM client_metrics WHERE client_id = ? AND id NOT IN (SELECT id "
                       "FROM client_metrics WHERE client_id = ? ORDER BY id DESC LIMIT ?)",
                       (row["id"], row["id"], METRIC_REPORTS_KEPT))


# -- helpers (each takes an open transaction) ------------------------------------------------

_PACKAGE_PLATFORMS = ("SELECT p.* FROM platforms p JOIN package_platforms pp "
                      "ON pp.platform_id = p.id WHERE pp.package_id = ? ORDER BY p.id")
_PACKAGE_FEATURES = ("SELECT f.* FROM features f JOIN package_features pf "
                     "ON pf.feature_id = f.id WHERE pf.package_id = ? ORDER BY f.id")
_TABLES = {"platform": "platforms", "feature": "features", "package": "packages"}
_COLUMNS = {"platform": ("name", "enabled", "config"),
            "feature": ("name", "description", "enabled"), "package": ("name", "price_cents")}


def _platform(r: sqlite3.Row) -> dict[str, Any]:
    return {"id": r["id"], "key": r["key"], "name": r["name"], "enabled": bool(r["enabled"]),
            "config": json.loads(r["config"]), "updated_at": r["updated_at"]}


def _feature(r: sqlite3.Row) -> dict[str, Any]:
    return {"id": r["id"], "key": r["key"], "name": r["name"], "description": r["description"],
            "enabled": bool(r["enabled"]), "updated_at": r["updated_at"]}


def _package(db: sqlite3.Connection, r: sqlite3.Row) -> dict[str, Any]:
    return {"id": r["id"], "key": r["key"], "name": r["name"], "price_cents": r["price_cents"],
            "platforms": [p["key"] for p in db.execute(_PACKAGE_PLATFORMS, (r["id"],))],
            "features": [f["key"] for f in db.execute(_PACKAGE_FEATURES, (r["id"],))],
            "updated_at": r["updated_at"]}


def _activity(r: sqlite3.Row) -> dict[str, Any]:
    return {"id": r["id"], "timestamp": r["ts"], "actor": r["actor"], "action": r["action"],
            "entity_type": r["entity_type"], "entity_id": r["entity_id"],
            "details": json.loads(r["details"])}


def _rows(db: sqlite3.Connection, sql: str, arg: Any, convert) -> list[dict[str, Any]]:
    return [convert(r) for r in db.execute(sql, (arg,))]


def _entity(db: sqlite3.Connection, entity_type: str, entity_id: int) -> dict[str, Any]:
    table = _TABLES.get(entity_type)
    row = table and db.execute(f"SELECT * FROM {table} WHERE id = ?", (entity_id,)).fetchone()
    if not row:
        raise NotFound(entity_type, entity_id)
    if entity_type == "platform":
        return _platform(row)
    return _feature(row) if entity_type == "feature" else _package(db, row)


def _ids(db: sqlite3.Connection, table: str, keys: list[str]) -> list[int]:
    ids = []
    for key in keys:
        row = db.execute(f"SELECT id FROM {table} WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise NotFound(table[:-1], key)
        ids.append(row["id"])
    return ids


def _apply(db: sqlite3.Connection, entity_type: str, entity_id: int,
           fields: dict[str, Any]) -> None:
    columns = {k: v for k, v in fields.items() if k in _COLUMNS[entity_type]}
    if "config" in columns:
        columns["config"] = json.dumps(columns["config"], sort_keys=True)
    if "enabled" in columns:
        columns["enabled"] = int(bool(columns["enabled"]))
    assignments = ", ".join(f"{k} = ?" for k in columns) + (", " if columns else "")
    db.execute(f"UPDATE {_TABLES[entity_type]} SET {assignments}updated_at = ? WHERE id = ?",
               (*columns.values(), now_iso(), entity_id))
    for name, table in (("platforms", "platforms"), ("features", "features")):
        if entity_type == "package" and fields.get(name) is not None:
            link, column = f"package_{name}", f"{name[:-1]}_id"
            ids = _ids(db, table, fields[name])
            db.execute(f"DELETE FROM {link} WHERE package_id = ?", (entity_id,))
            db.executemany(f"INSERT INTO {link} (package_id, {column}) VALUES (?, ?)",
                           [(entity_id, i) for i in ids])


def _client_keys(db: sqlite3.Connection, sql: str, arg: Any) -> list[str]:
    return [r["key"] for r in db.execute(sql, (arg,))]


def _affected(db: sqlite3.Connection, entity_type: str, entity_id: int) -> list[str]:
    """The clients whose package has the entity (or is it)."""
    if entity_type == "package":
        return _client_keys(db, "SELECT key FROM clients WHERE package_id = ?", entity_id)
    link, column = ("package_platforms", "platform_id") if entity_type == "platform" \
        else ("package_features", "feature_id")
    return _client_keys(db, f"SELECT c.key FROM clients c JOIN {link} l ON l.package_id = "
                        f"c.package_id WHERE l.{column} = ? ORDER BY c.id", entity_id)


def _log(db: sqlite3.Connection, actor: str, action: str, entity_type: str | None,
         entity_id: int | None, details: dict[str, Any]) -> int:
    cur = db.execute("INSERT INTO activity (ts, actor, action, entity_type, entity_id, details) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     (now_iso(), actor, action, entity_type, entity_id, json.dumps(details)))
    return int(cur.lastrowid)


def _version(db: sqlite3.Connection) -> int:
    return db.execute("SELECT value FROM meta WHERE key = 'config_version'").fetchone()[0]


def _bump(db: sqlite3.Connection) -> None:
    db.execute("UPDATE meta SET value = value + 1 WHERE key = 'config_version'")


def _fill_demo(db: sqlite3.Connection) -> None:
    stamp = now_iso()
    db.executemany("INSERT INTO platforms (key, name, updated_at) VALUES (?, ?, ?)",
                   [(k, n, stamp) for k, n in DEMO_PLATFORMS])
    db.executemany("INSERT INTO features (key, name, updated_at) VALUES (?, ?, ?)",
                   [(k, n, stamp) for k, n in DEMO_FEATURES])
    for key, (name, price, platforms, features) in DEMO_PACKAGES.items():
        cur = db.execute("INSERT INTO packages (key, name, price_cents, updated_at) "
                         "VALUES (?, ?, ?, ?)", (key, name, price, stamp))
        _apply(db, "package", int(cur.lastrowid), {"platforms": platforms, "features": features})
    for key, name, package in DEMO_CLIENTS:
        db.execute("INSERT INTO clients (key, name, package_id) "
                   "SELECT ?, ?, id FROM packages WHERE key = ?", (key, name, package))
    _log(db, "system", "store.created", None, None, {"at": stamp, "demo": True})
