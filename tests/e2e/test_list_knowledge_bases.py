"""ListKnowledgeBases against a real server: every KB holding a pattern, in kb_id order,
paged (AIP-158), a bad page token or size named in a BadRequest."""

from __future__ import annotations

import uuid

import pytest
from kato_client import KatoClient
from kato_client._proto.kato.v1 import kato_service_pb2 as api
from kato_client.errors import InvalidArgument


@pytest.fixture
def kato(kato_server):
    with KatoClient(kato_server.target) as client:
        yield client


def learn(kato: KatoClient, kb_id: str, *symbols: str) -> None:
    session = kato.session(kb_id)
    for symbol in symbols:
        session.observe([symbol])
    session.learn()


def test_lists_the_knowledge_bases_in_id_order_across_pages(kato):
    prefix = f"listing-{uuid.uuid4().hex[:8]}"
    for i in (3, 1, 2):
        learn(kato, f"{prefix}-{i}", "a", "b")
    learn(kato, f"{prefix}-2", "c", "d")
    learn(kato, f"{prefix}-cleared", "a", "b")
    kato.clear_knowledge_base(f"{prefix}-cleared")

    pager = kato.list_knowledge_bases(page_size=1)
    listed = [(kb.kb_id, kb.pattern_count) for kb in pager if kb.kb_id.startswith(prefix)]
    assert listed == [(f"{prefix}-1", 1), (f"{prefix}-2", 2), (f"{prefix}-3", 1)]
    pages = list(kato.list_knowledge_bases(page_size=1).pages)
    assert all(len(page.knowledge_bases) == 1 for page in pages) and not pages[-1].next_page_token
    ids = [kb.kb_id for page in pages for kb in page.knowledge_bases]
    assert ids == sorted(ids)


def test_a_bad_page_token_or_size_names_the_field(kato):
    for request, field in (
        (api.ListKnowledgeBasesRequest(page_token="not-a-token"), "page_token"),
        (api.ListKnowledgeBasesRequest(page_size=-1), "page_size"),
    ):
        with pytest.raises(InvalidArgument) as raised:
            kato.call("ListKnowledgeBases", request)
        assert [v.field for v in raised.value.field_violations] == [field]
    # A ListPatterns token is not a ListKnowledgeBases one.
    learn(kato, "listing-token-kb", "a", "b")
    learn(kato, "listing-token-kb", "c", "d")
    token = kato.call("ListPatterns", api.ListPatternsRequest(kb_id="listing-token-kb", page_size=1)).next_page_token
    with pytest.raises(InvalidArgument):
        kato.call("ListKnowledgeBases", api.ListKnowledgeBasesRequest(page_token=token))
