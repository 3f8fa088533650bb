"""How durable server-held sessions are: as durable as the Redis that keeps them.

A session write is acknowledged once Redis has it in memory. Whether it survives a
Redis restart is Redis's configuration, not ours:

- ``appendonly yes`` + ``appendfsync always``: every acknowledged write is on disk
  before Redis answers; nothing acknowledged is lost (at a cost per write).
- ``appendonly yes`` + ``appendfsync everysec`` (Redis's default once AOF is on): at
  most about one second of acknowledged writes is lost on a crash or power loss; a
  clean restart loses nothing. The recommended setting.
- ``appendonly yes`` + ``appendfsync no``: the OS decides when to flush (~30 s).
- RDB snapshots only (``save 3600 1 300 100 60 10000`` ...): everything since the
  last snapshot is lost on a crash.
- neither (``appendonly no``, ``save ""``): every session is lost when Redis restarts.

`check_persistence` asks the Redis in use (``CONFIG GET``) at start-up; the server logs
a warning for anything weaker than AOF, and reports the mode as the metric
``kato_session_store_persistence{mode}``. A Redis that refuses ``CONFIG`` (ACLs, some
managed services) reports ``unknown``: check its persistence with its provider.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import redis

__all__ = ["Persistence", "check_persistence", "persistence_of", "MODES"]

log = logging.getLogger("kato_grpc.sessions")

MODES = ("aof-always", "aof-everysec", "aof-no", "rdb", "none", "unknown")
_WHAT_IS_LOST = {
    "aof-always": "no acknowledged session write is lost when Redis restarts",
    "aof-everysec": "at most ~1 s of acknowledged session writes is lost if Redis crashes",
    "aof-no": "acknowledged session writes not yet flushed by the OS (~30 s) are lost if Redis crashes",
    "rdb": "session writes since the last RDB snapshot are lost if Redis crashes or restarts uncleanly",
    "none": "EVERY server-held session is lost when Redis restarts",
}


@dataclass(frozen=True)
class Persistence:
    """The persistence of a Redis: one of `MODES`, and what it means for sessions."""

    mode: str
    detail: str

    @property
    def durable(self) -> bool:
        """Whether acknowledged sessions survive a Redis restart (AOF on)."""
        return self.mode.startswith("aof-")


def persistence_of(appendonly: str, appendfsync: str, save: str) -> Persistence:
    """The persistence the three CONFIG values give."""
    if appendonly == "yes":
        mode = f"aof-{appendfsync}" if appendfsync in ("always", "everysec", "no") else "aof-everysec"
    elif save.strip():
        mode = "rdb"
    else:
        mode = "none"
    return Persistence(
        mode, f"appendonly {appendonly}, appendfsync {appendfsync}, save {save!r}: {_WHAT_IS_LOST[mode]}"
    )


def check_persistence(client: redis.Redis, where: str) -> Persistence:
    """Ask `client`'s Redis for its persistence and log what it means (warning below AOF)."""
    try:
        config = {}
        for key in ("appendonly", "appendfsync", "save"):
            config.update(
                {
                    k if isinstance(k, str) else k.decode(): v if isinstance(v, str) else v.decode()
                    for k, v in cast("dict[Any, Any]", client.config_get(key)).items()  # sync client: a dict
                }
            )
        persistence = persistence_of(
            config.get("appendonly", "no"), config.get("appendfsync", ""), config.get("save", "")
        )
    except redis.exceptions.RedisError as exc:
        persistence = Persistence(
            "unknown", f"CONFIG GET failed ({type(exc).__name__}): cannot tell whether sessions survive a Redis restart"
        )
        log.warning("session store Redis at %s: %s", where, persistence.detail)
        return persistence
    if persistence.durable:
        log.info("session store Redis at %s: %s", where, persistence.detail)
    else:
        log.warning(
            "session store Redis at %s has no append-only file (%s); for durable sessions set "
            "`appendonly yes` and `appendfsync everysec` (or `always`)",
            where,
            persistence.detail,
        )
    return persistence
