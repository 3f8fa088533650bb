"""A small, typed Python client for kato.v1.KatoService.

Start here::

    from kato_client import KatoClient

    with KatoClient("127.0.0.1:50051") as kato:
        session = kato.session("my-kb")          # client-held state, threaded for you
        session.observe(["hello"])
        session.observe(["world"])
        print(session.learn())                   # PTRN|...
        session.observe(["hello"])
        for prediction in session.predict().predictions:
            print(prediction.name, prediction.future)

        for pattern in kato.list_patterns("my-kb"):   # pages fetched as you iterate
            print(pattern.name, pattern.frequency)

`kato.server_session(kb_id)` gives the same interface over a server-held session.
Failures raise `kato_client.errors.KatoClientError` subclasses, one per status code
(`InvalidArgument`, `NotFound`, ...), with `reason`, `field_violations` and the server's
`request_id` decoded. Calls that are safe to repeat (reads, and server-held writes, which
carry a `request_id`) are retried on UNAVAILABLE and ABORTED: see `kato_client.retry`.

The package owns its generated code (`kato_client._proto`, from protos/ by `make proto`)
and needs nothing from the server package.
"""

from kato_client.client import KatoClient, ServerSession, Session
from kato_client.errors import KatoClientError
from kato_client.pages import Pager
from kato_client.retry import Retry

__all__ = ["KatoClient", "KatoClientError", "Pager", "Retry", "ServerSession", "Session"]
