"""Generated protobuf and gRPC code for protos/ (regenerate with `make proto`).

Import it as ``from kato_grpc._proto.kato.v1 import kato_service_pb2``: `make proto`
rewrites the generated ``from kato.v1 import ...`` lines to this package path, so
there is no top-level ``kato`` package and nothing is added to ``sys.path``.

`kato_v1.binpb` beside this file is the descriptor set of protos/ and its imports
*with source info* (the comments). The generated modules carry no comments, and
grpcio-reflection re-serialises descriptors from a pool (``CopyToProto``, which drops
source info), so a reflection service that should let ``grpcurl describe`` show the
API reference answers with `serialized_files()` instead.
"""

from __future__ import annotations

from importlib import resources

from google.protobuf import descriptor_pb2

__all__ = ["DESCRIPTOR_SET_NAME", "descriptor_set", "serialized_files"]

DESCRIPTOR_SET_NAME = "kato_v1.binpb"


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """The FileDescriptorSet of protos/ with imports and comments, dependencies first."""
    data = resources.files(__name__).joinpath(DESCRIPTOR_SET_NAME).read_bytes()
    return descriptor_pb2.FileDescriptorSet.FromString(data)


def serialized_files() -> dict[str, bytes]:
    """File name -> serialized FileDescriptorProto (with comments), dependencies first.

    >>> "kato/v1/kato_service.proto" in serialized_files()
    True
    """
    return {file.name: file.SerializeToString(deterministic=True) for file in descriptor_set().file}
