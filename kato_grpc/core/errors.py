"""Exceptions the engine raises. Plain Python: the server maps them to gRPC codes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FieldViolation", "ValidationError", "LimitExceeded", "EmptyStmError", "NotFoundError"]


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path (``config.recall_threshold``) and why it is bad."""

    field: str
    description: str


class ValidationError(ValueError):
    """Bad input. Nothing was changed. Maps to INVALID_ARGUMENT."""

    def __init__(self, violations: list[FieldViolation] | FieldViolation):
        if isinstance(violations, FieldViolation):
            violations = [violations]
        self.violations = tuple(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))


class LimitExceeded(ValidationError):
    """Input over a server limit. Nothing was changed. Maps to RESOURCE_EXHAUSTED."""


class EmptyStmError(Exception):
    """Learn on an empty STM. Maps to FAILED_PRECONDITION."""


class NotFoundError(LookupError):
    """An unknown pattern or session. Maps to NOT_FOUND."""
