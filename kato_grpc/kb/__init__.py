"""Knowledge-base stores: one `KnowledgeStore` protocol, several back ends.

`MemoryStore` (non-durable, tests) and `SqliteStore` (the durable embedded default) are
imported here; `kato_grpc.kb.clickhouse.ClickHouseStore` (knowledge bases in ClickHouse,
shared by any number of replicas) is imported where it is chosen, so clickhouse-driver
loads only then.
"""

from kato_grpc.kb.base import KnowledgeStore, SymbolStats
from kato_grpc.kb.memory import MemoryStore
from kato_grpc.kb.sqlite import SqliteStore

__all__ = ["KnowledgeStore", "SymbolStats", "MemoryStore", "SqliteStore"]
