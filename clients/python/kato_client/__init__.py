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
Failures raise `kato_client.errors.KatoClientError` subclasses (`InvalidArgument`,
`NotFound`, ...) with `reason` and `field_violations` decoded.
"""

from kato_client.client import KatoClient, ServerSession, Session
from kato_client.errors import KatoClientError

__all__ = ["KatoClient", "Session", "ServerSession", "KatoClientError"]
