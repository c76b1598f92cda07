from google.protobuf import empty_pb2 as _empty_pb2
from . import endpoint_pb2 as _endpoint_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PrepareRequest(_message.Message):
    __slots__ = ("account", "threshold", "participants", "passphrase")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    account: str
    threshold: int
    participants: _containers.RepeatedCompositeFieldContainer[_endpoint_pb2.Endpoint]
    passphrase: bytes
    def __init__(self, account: _Optional[str] = ..., threshold: _Optional[int] = ..., participants: _Optional[_Iterable[_Union[_endpoint_pb2.Endpoint, _Mapping]]] = ..., passphrase: _Optional[bytes] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: str
    def __init__(self, account: _Optional[str] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("account", "confirmation_data")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_DATA_FIELD_NUMBER: _ClassVar[int]
    account: str
    confirmation_data: bytes
    def __init__(self, account: _Optional[str] = ..., confirmation_data: _Optional[bytes] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("public_key", "confirmation_signature")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    confirmation_signature: bytes
    def __init__(self, public_key: _Optional[bytes] = ..., confirmation_signature: _Optional[bytes] = ...) -> None: ...

class AbortRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: str
    def __init__(self, account: _Optional[str] = ...) -> None: ...

class ContributeRequest(_message.Message):
    __slots__ = ("account", "secret", "verification_vector")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_VECTOR_FIELD_NUMBER: _ClassVar[int]
    account: str
    secret: bytes
    verification_vector: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, account: _Optional[str] = ..., secret: _Optional[bytes] = ..., verification_vector: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ContributeResponse(_message.Message):
    __slots__ = ("secret", "verification_vector")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_VECTOR_FIELD_NUMBER: _ClassVar[int]
    secret: bytes
    verification_vector: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, secret: _Optional[bytes] = ..., verification_vector: _Optional[_Iterable[bytes]] = ...) -> None: ...
