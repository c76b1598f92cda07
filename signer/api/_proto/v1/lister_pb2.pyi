from . import endpoint_pb2 as _endpoint_pb2
from . import responsestate_pb2 as _responsestate_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListAccountsRequest(_message.Message):
    __slots__ = ("paths",)
    PATHS_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, paths: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAccountsResponse(_message.Message):
    __slots__ = ("state", "Accounts", "DistributedAccounts")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTEDACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    state: _responsestate_pb2.ResponseState
    Accounts: _containers.RepeatedCompositeFieldContainer[Account]
    DistributedAccounts: _containers.RepeatedCompositeFieldContainer[DistributedAccount]
    def __init__(self, state: _Optional[_Union[_responsestate_pb2.ResponseState, str]] = ..., Accounts: _Optional[_Iterable[_Union[Account, _Mapping]]] = ..., DistributedAccounts: _Optional[_Iterable[_Union[DistributedAccount, _Mapping]]] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("name", "public_key", "uuid")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    name: str
    public_key: bytes
    uuid: bytes
    def __init__(self, name: _Optional[str] = ..., public_key: _Optional[bytes] = ..., uuid: _Optional[bytes] = ...) -> None: ...

class DistributedAccount(_message.Message):
    __slots__ = ("name", "public_key", "participants", "signing_threshold", "uuid", "composite_public_key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    COMPOSITE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    public_key: bytes
    participants: _containers.RepeatedCompositeFieldContainer[_endpoint_pb2.Endpoint]
    signing_threshold: int
    uuid: bytes
    composite_public_key: bytes
    def __init__(self, name: _Optional[str] = ..., public_key: _Optional[bytes] = ..., participants: _Optional[_Iterable[_Union[_endpoint_pb2.Endpoint, _Mapping]]] = ..., signing_threshold: _Optional[int] = ..., uuid: _Optional[bytes] = ..., composite_public_key: _Optional[bytes] = ...) -> None: ...
