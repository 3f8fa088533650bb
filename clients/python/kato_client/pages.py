"""A paginated list call behind an iterator, as python-api-core's `GRPCIterator` does it.

Iterating a `Pager` yields the items; the page token never reaches the caller. `.pages`
yields the responses one page at a time instead. A pager is a single pass: iterate it
once, through its items or through its pages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["Pager"]


class _Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


PageT = TypeVar("PageT", bound=_Page)
ItemT = TypeVar("ItemT")


class Pager(Generic[PageT, ItemT]):
    """The items of every page `fetch(page_token)` returns, pages fetched as you iterate.

    >>> from types import SimpleNamespace as Page
    >>> book = {"": Page(items=[1, 2], next_page_token="p2"), "p2": Page(items=[3], next_page_token="")}
    >>> list(Pager(book.__getitem__, lambda page: page.items))
    [1, 2, 3]
    >>> [page.items for page in Pager(book.__getitem__, lambda page: page.items).pages]
    [[1, 2], [3]]
    """

    def __init__(self, fetch: Callable[[str], PageT], items: Callable[[PageT], Iterable[ItemT]]) -> None:
        self._fetch = fetch
        self._items = items
        self._started = False
        self._item_iterator: Iterator[ItemT] | None = None

    @property
    def pages(self) -> Iterator[PageT]:
        """Each response in turn, until one comes back with an empty `next_page_token`."""
        if self._started:
            raise ValueError("this pager has already been iterated")
        self._started = True
        return self._each_page()

    def _each_page(self) -> Iterator[PageT]:
        token = ""
        while True:
            page = self._fetch(token)
            yield page
            token = page.next_page_token
            if not token:
                return

    def __iter__(self) -> Iterator[ItemT]:
        if self._item_iterator is None:
            self._item_iterator = (item for page in self.pages for item in self._items(page))
        return self._item_iterator

    def __next__(self) -> ItemT:
        return next(iter(self))
