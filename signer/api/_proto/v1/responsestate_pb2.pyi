from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class ResponseState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[ResponseState]
    SUCCEEDED: _ClassVar[ResponseState]
    DENIED: _ClassVar[ResponseState]
    FAILED: _ClassVar[ResponseState]
UNKNOWN: ResponseState
SUCCEEDED: ResponseState
DENIED: ResponseState
FAILED: ResponseState
