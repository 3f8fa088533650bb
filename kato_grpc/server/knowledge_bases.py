"""ListKnowledgeBases: the knowledge bases of the store, a page at a time (AIP-158).

The store answers from its durable copy (SQLite, ClickHouse: a KB some other worker or
replica wrote is listed too), so the call runs on the kb lane. The page token is opaque
to clients; it names the last kb_id of the page and is checked to be one of ours.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc.core.errors import FieldViolation, ValidationError

__all__ = ["list_page"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

Listing = Callable[[str, int], Awaitable[list[tuple[str, int]]]]
"""(after, limit) -> at most `limit` (kb_id, pattern count) with kb_id > after, ascending."""


def _token(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"kbs_after": after}).encode()).decode()


def _after(token: str) -> str:
    if not token:
        return ""
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["kbs_after"]
        if isinstance(after, str):
            return after
    except (ValueError, KeyError, TypeError):
        pass
    raise ValidationError(
        FieldViolation("page_token", "is not a ListKnowledgeBases token of this server; pass next_page_token unchanged")
    )


async def list_page(request: api.ListKnowledgeBasesRequest, listing: Listing) -> api.ListKnowledgeBasesResponse:
    if request.page_size < 0:
        raise ValidationError(FieldViolation("page_size", f"{request.page_size} must not be negative"))
    size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    rows = await listing(_after(request.page_token), size + 1)  # one more: is there a next page?
    response = api.ListKnowledgeBasesResponse()
    for kb_id, count in rows[:size]:
        response.knowledge_bases.add(kb_id=kb_id, pattern_count=count)
    if len(rows) > size:
        response.next_page_token = _token(rows[size - 1][0])
    return response
