from . import eth2_pb2 as _eth2_pb2
from . import responsestate_pb2 as _responsestate_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignRequest(_message.Message):
    __slots__ = ("public_key", "account", "data", "domain")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    account: str
    data: bytes
    domain: bytes
    def __init__(self, public_key: _Optional[bytes] = ..., account: _Optional[str] = ..., data: _Optional[bytes] = ..., domain: _Optional[bytes] = ...) -> None: ...

class MultisignRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SignRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SignRequest, _Mapping]]] = ...) -> None: ...

class SignBeaconAttestationRequest(_message.Message):
    __slots__ = ("public_key", "account", "domain", "data")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    account: str
    domain: bytes
    data: _eth2_pb2.AttestationData
    def __init__(self, public_key: _Optional[bytes] = ..., account: _Optional[str] = ..., domain: _Optional[bytes] = ..., data: _Optional[_Union[_eth2_pb2.AttestationData, _Mapping]] = ...) -> None: ...

class SignBeaconAttestationsRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SignBeaconAttestationRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SignBeaconAttestationRequest, _Mapping]]] = ...) -> None: ...

class SignBeaconProposalRequest(_message.Message):
    __slots__ = ("public_key", "account", "domain", "data")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    account: str
    domain: bytes
    data: _eth2_pb2.BeaconBlockHeader
    def __init__(self, public_key: _Optional[bytes] = ..., account: _Optional[str] = ..., domain: _Optional[bytes] = ..., data: _Optional[_Union[_eth2_pb2.BeaconBlockHeader, _Mapping]] = ...) -> None: ...

class SignResponse(_message.Message):
    __slots__ = ("state", "signature")
    STATE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    state: _responsestate_pb2.ResponseState
    signature: bytes
    def __init__(self, state: _Optional[_Union[_responsestate_pb2.ResponseState, str]] = ..., signature: _Optional[bytes] = ...) -> None: ...

class MultisignResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[SignResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[SignResponse, _Mapping]]] = ...) -> None: ...
