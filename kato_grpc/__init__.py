"""KATO gRPC: a deterministic, explainable pattern-memory service."""

__version__ = "0.1.0"
