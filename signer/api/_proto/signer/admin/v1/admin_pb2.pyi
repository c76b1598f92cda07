from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResponseStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESPONSE_STATUS_UNSPECIFIED: _ClassVar[ResponseStatus]
    RESPONSE_STATUS_OK: _ClassVar[ResponseStatus]
    RESPONSE_STATUS_PARTIAL: _ClassVar[ResponseStatus]
    RESPONSE_STATUS_REFUSED: _ClassVar[ResponseStatus]
    RESPONSE_STATUS_FAILED: _ClassVar[ResponseStatus]
    RESPONSE_STATUS_PENDING: _ClassVar[ResponseStatus]

class ItemStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ITEM_STATUS_UNSPECIFIED: _ClassVar[ItemStatus]
    ITEM_STATUS_IMPORTED: _ClassVar[ItemStatus]
    ITEM_STATUS_GENERATED: _ClassVar[ItemStatus]
    ITEM_STATUS_DELETED: _ClassVar[ItemStatus]
    ITEM_STATUS_DUPLICATE: _ClassVar[ItemStatus]
    ITEM_STATUS_NOT_FOUND: _ClassVar[ItemStatus]
    ITEM_STATUS_NOT_ACTIVE: _ClassVar[ItemStatus]
    ITEM_STATUS_ERROR: _ClassVar[ItemStatus]

class KeyScheme(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_SCHEME_UNSPECIFIED: _ClassVar[KeyScheme]
    KEY_SCHEME_BLS12_381: _ClassVar[KeyScheme]
    KEY_SCHEME_SECP256K1: _ClassVar[KeyScheme]
    KEY_SCHEME_ED25519: _ClassVar[KeyScheme]

class KeyModuleKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_MODULE_KIND_UNSPECIFIED: _ClassVar[KeyModuleKind]
    KEY_MODULE_KIND_EMULATED: _ClassVar[KeyModuleKind]
    KEY_MODULE_KIND_PKCS11: _ClassVar[KeyModuleKind]

class StoreBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORE_BACKEND_UNSPECIFIED: _ClassVar[StoreBackend]
    STORE_BACKEND_SQLITE: _ClassVar[StoreBackend]
    STORE_BACKEND_POSTGRES: _ClassVar[StoreBackend]

class PendingKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PENDING_KIND_UNSPECIFIED: _ClassVar[PendingKind]
    PENDING_KIND_DELETE_KEYS: _ClassVar[PendingKind]
    PENDING_KIND_IMPORT_KEYSTORES: _ClassVar[PendingKind]
    PENDING_KIND_IMPORT_INTERCHANGE: _ClassVar[PendingKind]
    PENDING_KIND_IMPORT_COMETBFT_STATE: _ClassVar[PendingKind]
RESPONSE_STATUS_UNSPECIFIED: ResponseStatus
RESPONSE_STATUS_OK: ResponseStatus
RESPONSE_STATUS_PARTIAL: ResponseStatus
RESPONSE_STATUS_REFUSED: ResponseStatus
RESPONSE_STATUS_FAILED: ResponseStatus
RESPONSE_STATUS_PENDING: ResponseStatus
ITEM_STATUS_UNSPECIFIED: ItemStatus
ITEM_STATUS_IMPORTED: ItemStatus
ITEM_STATUS_GENERATED: ItemStatus
ITEM_STATUS_DELETED: ItemStatus
ITEM_STATUS_DUPLICATE: ItemStatus
ITEM_STATUS_NOT_FOUND: ItemStatus
ITEM_STATUS_NOT_ACTIVE: ItemStatus
ITEM_STATUS_ERROR: ItemStatus
KEY_SCHEME_UNSPECIFIED: KeyScheme
KEY_SCHEME_BLS12_381: KeyScheme
KEY_SCHEME_SECP256K1: KeyScheme
KEY_SCHEME_ED25519: KeyScheme
KEY_MODULE_KIND_UNSPECIFIED: KeyModuleKind
KEY_MODULE_KIND_EMULATED: KeyModuleKind
KEY_MODULE_KIND_PKCS11: KeyModuleKind
STORE_BACKEND_UNSPECIFIED: StoreBackend
STORE_BACKEND_SQLITE: StoreBackend
STORE_BACKEND_POSTGRES: StoreBackend
PENDING_KIND_UNSPECIFIED: PendingKind
PENDING_KIND_DELETE_KEYS: PendingKind
PENDING_KIND_IMPORT_KEYSTORES: PendingKind
PENDING_KIND_IMPORT_INTERCHANGE: PendingKind
PENDING_KIND_IMPORT_COMETBFT_STATE: PendingKind

class ItemResult(_message.Message):
    __slots__ = ("index", "public_key", "status", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    public_key: bytes
    status: ItemStatus
    message: str
    def __init__(self, index: _Optional[int] = ..., public_key: _Optional[bytes] = ..., status: _Optional[_Union[ItemStatus, str]] = ..., message: _Optional[str] = ...) -> None: ...

class PendingOperation(_message.Message):
    __slots__ = ("id", "kind", "requested_by_operator", "requested_by_client", "created_unix_s", "expires_unix_s", "public_keys", "document_sha256", "document_size", "keystores", "chain_id", "summary")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_OPERATOR_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_CLIENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_SIZE_FIELD_NUMBER: _ClassVar[int]
    KEYSTORES_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: PendingKind
    requested_by_operator: str
    requested_by_client: str
    created_unix_s: int
    expires_unix_s: int
    public_keys: _containers.RepeatedScalarFieldContainer[bytes]
    document_sha256: bytes
    document_size: int
    keystores: int
    chain_id: str
    summary: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[PendingKind, str]] = ..., requested_by_operator: _Optional[str] = ..., requested_by_client: _Optional[str] = ..., created_unix_s: _Optional[int] = ..., expires_unix_s: _Optional[int] = ..., public_keys: _Optional[_Iterable[bytes]] = ..., document_sha256: _Optional[bytes] = ..., document_size: _Optional[int] = ..., keystores: _Optional[int] = ..., chain_id: _Optional[str] = ..., summary: _Optional[str] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ("public_key", "scheme", "account", "module", "derivation_path")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    scheme: KeyScheme
    account: str
    module: KeyModuleKind
    derivation_path: str
    def __init__(self, public_key: _Optional[bytes] = ..., scheme: _Optional[_Union[KeyScheme, str]] = ..., account: _Optional[str] = ..., module: _Optional[_Union[KeyModuleKind, str]] = ..., derivation_path: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("scheme",)
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    scheme: KeyScheme
    def __init__(self, scheme: _Optional[_Union[KeyScheme, str]] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("status", "message", "keys")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    status: ResponseStatus
    message: str
    keys: _containers.RepeatedCompositeFieldContainer[KeyInfo]
    def __init__(self, status: _Optional[_Union[ResponseStatus, str]] = ..., message: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[KeyInfo, _Mapping]]] = ...) -> None: ...

class ImportKeystoresRequest(_message.Message):
    __slots__ = ("keystores", "passwords", "wallet", "slashing_protection")
    KEYSTORES_FIELD_NUMBER: _ClassVar[int]
    PASSWORDS_FIELD_NUMBER: _ClassVar[int]
    WALLET_FIELD_NUMBER: _ClassVar[int]
    SLASHING_PROTECTION_FIELD_NUMBER: _ClassVar[int]
    keystores: _containers.RepeatedScalarFieldContainer[bytes]
    passwords: _containers.RepeatedScalarFieldContainer[str]
    wallet: str
    slashing_protection: bytes
    def __init__(self, keystores: _Optional[_Iterable[bytes]] = ..., passwords: _Optional[_Iterable[str]] = ..., wallet: _Optional[str] = ..., slashing_protection: _Optional[bytes] = ...) -> None: ...

class ImportKeystoresResponse(_message.Message):
    __slots__ = ("status", "message", "results", "pending")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    status: ResponseStatus
    message: str
    results: _containers.RepeatedCompositeFieldContainer[ItemResult]
    pending: PendingOperation
    def __init__(self, status: _Optional[_Union[ResponseStatus, str]] = ..., message: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ItemResult, _Mapping]]] = ..., pending: _Optional[_Union[PendingOperation, _Mapping]] = ...) -> None: ...

class GenerateKeysRequest(_message.Message):
    __slots__ = ("count", "wallet", "scheme")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    WALLET_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    count: int
    wallet: str
    scheme: KeyScheme
    def __init__(self, count: _Optional[int] = ..., wallet: _Optional[str] = ..., scheme: _Optional[_Union[KeyScheme, str]] = ...) -> None: ...

class GenerateKeysResponse(_message.Message):
    __slots__ = ("status", "message", "results")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    status: ResponseStatus
    message: str
    results: _containers.RepeatedCompositeFieldContainer[ItemResult]
    def __init__(self, status: _Optional[_Union[ResponseStatus, str]] = ..., message: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ItemResult, _Mapping]]] = ...) -> None: ...

class DeleteKeysRequest(_message.Message):
    __slots__ = ("public_keys",)
    PUBLIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    public_keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, public_keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class DeleteKeysResponse(_message.Message):
    __slots__ = ("status", "message", "results", "slashing_protection", "slashing_protection_size", "pending")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SLASHING_PROTECTION_FIELD_NUMBER: _ClassVar[int]
    SLASHING_PROTECTION_SIZE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    status: ResponseStatus
    message: str
    results: _containers.RepeatedCompositeFieldContainer[ItemResult]
    slashing_protection: bytes
    slashing_protection_size: int
    pending: PendingOperation
    def __init__(self, status: _Optional[_Union[ResponseStatus, str]] = ..., message: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ItemResult, _Mapping]]] = ..., slashing_protection: _Optional[bytes] = ..., slashing_protection_size: _Optional[int] = ..., pending: _Optional[_Union[PendingOperation, _Mapping]] = ...) -> None: ...

class ReloadKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadKeysResponse(_message.Message):
    __slots__ = ("status", "message", "keys_loaded")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    KEYS_LOADED_FIELD_NUMBER: _ClassVar[int]
    status: ResponseStatus
    message: str
    keys_loaded: _containers.RepeatedCompositeFieldContainer[SchemeCount]
    def __init__(self, status: _Optional[_Union[ResponseStatus, str]] = ..., message: _Optional[str] = ..., keys_loaded: _Optional[_Iterable[_Union[SchemeCount, _Mapping]]] = ...) -> None: ...

class ImportInterchangeRequest(_message.Message):
    __slots__ = ("interchange_json",)
    INTERCHANGE_JSON_FIELD_NUMBER: _ClassVar[int]
    interchange_json: bytes
    def __init__(self, interchange_json: _Optional[bytes] = ...) -> None: ...

class ImportInterchangeResponse(_message.Message):
    __slots__ = ("status", "message", "validators", "blocks_imported", "attestations_imported", "blocks_skipped", "attestations_skipped", "pending")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VALIDATORS_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_IMPORTED_FIELD_NUMBER: _ClassVar[int]
    ATTESTATIONS_IMPORTED_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    ATTESTATIONS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    status: ResponseStatus
    message: str
    validators: int
    blocks_imported: int
    attestations_imported: int
    blocks_skipped: int
    attestations_skipped: int
    pending: PendingOperation
    def __init__(self, status: _Optional[_Union[ResponseStatus, str]] = ..., message: _Optional[str] = ..., validators: _Optional[int] = ..., blocks_imported: _Optional[int] = ..., attestations_imported: _Optional[int] = ..., blocks_skipped: _Optional[int] = ..., attestations_skipped: _Optional[int] = ..., pending: _Optional[_Union[PendingOperation, _Mapping]] = ...) -> None: ...

class ExportInterchangeRequest(_message.Message):
    __slots__ = ("public_keys",)
    PUBLIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    public_keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, public_keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ExportInterchangeResponse(_message.Message):
    __slots__ = ("status", "message", "interchange_json", "interchange_json_size")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INTERCHANGE_JSON_FIELD_NUMBER: _ClassVar[int]
    INTERCHANGE_JSON_SIZE_FIELD_NUMBER: _ClassVar[int]
    status: ResponseStatus
    message: str
    interchange_json: bytes
    interchange_json_size: int
    def __init__(self, status: _Optional[_Union[ResponseStatus, str]] = ..., message: _Optional[str] = ..., interchange_json: _Optional[bytes] = ..., interchange_json_size: _Optional[int] = ...) -> None: ...

class ImportCometbftStateRequest(_message.Message):
    __slots__ = ("chain_id", "public_key", "state_json")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    chain_id: str
    public_key: bytes
    state_json: bytes
    def __init__(self, chain_id: _Optional[str] = ..., public_key: _Optional[bytes] = ..., state_json: _Optional[bytes] = ...) -> None: ...

class ImportCometbftStateResponse(_message.Message):
    __slots__ = ("status", "message", "pending")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    status: ResponseStatus
    message: str
    pending: PendingOperation
    def __init__(self, status: _Optional[_Union[ResponseStatus, str]] = ..., message: _Optional[str] = ..., pending: _Optional[_Union[PendingOperation, _Mapping]] = ...) -> None: ...

class ExportCometbftStateRequest(_message.Message):
    __slots__ = ("chain_id", "public_key")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    chain_id: str
    public_key: bytes
    def __init__(self, chain_id: _Optional[str] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class ExportCometbftStateResponse(_message.Message):
    __slots__ = ("status", "message", "state_json")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    status: ResponseStatus
    message: str
    state_json: bytes
    def __init__(self, status: _Optional[_Union[ResponseStatus, str]] = ..., message: _Optional[str] = ..., state_json: _Optional[bytes] = ...) -> None: ...

class ListPendingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPendingResponse(_message.Message):
    __slots__ = ("status", "message", "pending")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    status: ResponseStatus
    message: str
    pending: _containers.RepeatedCompositeFieldContainer[PendingOperation]
    def __init__(self, status: _Optional[_Union[ResponseStatus, str]] = ..., message: _Optional[str] = ..., pending: _Optional[_Iterable[_Union[PendingOperation, _Mapping]]] = ...) -> None: ...

class ApproveRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SchemeCount(_message.Message):
    __slots__ = ("scheme", "count")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    scheme: KeyScheme
    count: int
    def __init__(self, scheme: _Optional[_Union[KeyScheme, str]] = ..., count: _Optional[int] = ...) -> None: ...

class ProtectionStoreStatus(_message.Message):
    __slots__ = ("backend", "reachable", "message")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    backend: StoreBackend
    reachable: bool
    message: str
    def __init__(self, backend: _Optional[_Union[StoreBackend, str]] = ..., reachable: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("status", "message", "version", "network", "ready", "keys_loaded", "key_module", "protection_store")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    KEYS_LOADED_FIELD_NUMBER: _ClassVar[int]
    KEY_MODULE_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_STORE_FIELD_NUMBER: _ClassVar[int]
    status: ResponseStatus
    message: str
    version: str
    network: str
    ready: bool
    keys_loaded: _containers.RepeatedCompositeFieldContainer[SchemeCount]
    key_module: KeyModuleKind
    protection_store: ProtectionStoreStatus
    def __init__(self, status: _Optional[_Union[ResponseStatus, str]] = ..., message: _Optional[str] = ..., version: _Optional[str] = ..., network: _Optional[str] = ..., ready: _Optional[bool] = ..., keys_loaded: _Optional[_Iterable[_Union[SchemeCount, _Mapping]]] = ..., key_module: _Optional[_Union[KeyModuleKind, str]] = ..., protection_store: _Optional[_Union[ProtectionStoreStatus, _Mapping]] = ...) -> None: ...
