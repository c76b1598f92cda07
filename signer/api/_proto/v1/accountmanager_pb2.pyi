from . import endpoint_pb2 as _endpoint_pb2
from . import responsestate_pb2 as _responsestate_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UnlockAccountRequest(_message.Message):
    __slots__ = ("account", "passphrase")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    account: str
    passphrase: bytes
    def __init__(self, account: _Optional[str] = ..., passphrase: _Optional[bytes] = ...) -> None: ...

class LockAccountRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: str
    def __init__(self, account: _Optional[str] = ...) -> None: ...

class UnlockAccountResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _responsestate_pb2.ResponseState
    def __init__(self, state: _Optional[_Union[_responsestate_pb2.ResponseState, str]] = ...) -> None: ...

class LockAccountResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _responsestate_pb2.ResponseState
    def __init__(self, state: _Optional[_Union[_responsestate_pb2.ResponseState, str]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("account", "passphrase", "participants", "signing_threshold")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    account: str
    passphrase: bytes
    participants: int
    signing_threshold: int
    def __init__(self, account: _Optional[str] = ..., passphrase: _Optional[bytes] = ..., participants: _Optional[int] = ..., signing_threshold: _Optional[int] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("state", "message", "public_key", "participants")
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    state: _responsestate_pb2.ResponseState
    message: str
    public_key: bytes
    participants: _containers.RepeatedCompositeFieldContainer[_endpoint_pb2.Endpoint]
    def __init__(self, state: _Optional[_Union[_responsestate_pb2.ResponseState, str]] = ..., message: _Optional[str] = ..., public_key: _Optional[bytes] = ..., participants: _Optional[_Iterable[_Union[_endpoint_pb2.Endpoint, _Mapping]]] = ...) -> None: ...
