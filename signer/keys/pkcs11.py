"""The PKCS#11 key module (tested against SoftHSM2): the only module that imports ``pkcs11``.

* secp256k1 and ed25519 keys live in the token: generated there (CKM_EC_KEY_PAIR_GEN with the
  secp256k1 OID, CKM_EC_EDWARDS_KEY_PAIR_GEN for ed25519) or imported as sensitive,
  non-extractable token objects, labelled with the account name and carrying a random CKA_ID.
  They sign through the token (CKM_ECDSA over the 32-byte digest, normalised to low S; CKM_EDDSA).
* PKCS#11 has no BLS mechanism: BLS secrets are sealed with CKM_AES_GCM under a non-extractable
  AES-256 key that never leaves the token (AAD = public key, random 12-byte IV); the blobs live in
  ``<data_dir>/pkcs11-bls-sealed.json`` (atomic writes) and are opened through the token at unlock.
  Plaintext secrets are kept only in process memory (a plain dict a forked worker inherits).

Threads: python-pkcs11 0.10 calls ``C_Initialize(NULL)``; SoftHSM2 then disables its own locking
and two threads on two sessions corrupt its heap. Right after python-pkcs11 has loaded the library
(once per process), this module finalises it and initialises it again through ctypes with
``CK_C_INITIALIZE_ARGS{flags = CKF_OS_LOCKING_OK}``; python-pkcs11 keeps using the same, now
thread-safe, module instance. Login state is per application in PKCS#11, so each token is logged in
once per process (shared by every instance of this class) and signing uses a pool of sessions.

Every pkcs11 exception is translated here into ``signer.errors``. The PIN is never logged nor put
in an error message.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pkcs11
from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11err
from pkcs11.util.ec import encode_named_curve_parameters

from signer.crypto import bls, ed25519, secp256k1
from signer.errors import (
    KeyModuleError,
    MalformedRequest,
    ModuleTampered,
    SignerError,
    UnknownKey,
    UnsupportedScheme,
    WrongPin,
)
from signer.jsondoc import load_json, read_at_most
from signer.keys.module import check_account_name
from signer.types import KeyInfo, Scheme

log = logging.getLogger(__name__)

SECP256K1_OID: Final = "1.3.132.0.10"
SECP256K1_EC_PARAMS: Final = encode_named_curve_parameters(SECP256K1_OID)
ED25519_EC_PARAMS: Final = bytes.fromhex("06032b6570")
"""DER OID 1.3.101.112 (id-Ed25519), the CKA_EC_PARAMS of a CKK_EC_EDWARDS key."""
SEAL_KEY_LABEL: Final = "validator-signer/bls-seal"
SEALED_FILE_NAME: Final = "pkcs11-bls-sealed.json"
SEALED_FILE_VERSION: Final = 1
MAX_SEALED_FILE_BYTES: Final = 256 * 1024 * 1024
DEFAULT_POOL_SIZE: Final = 4
SESSION_WAIT_S: Final = 30.0

_SECP256K1_P: Final = 2**256 - 2**32 - 977

# --- raw Cryptoki calls python-pkcs11 0.10 does not offer ---------------------------------------

_CKR_OK: Final = 0x0
_CKR_PIN_INCORRECT: Final = 0xA0
_CKR_PIN_INVALID: Final = 0xA1
_CKR_PIN_LEN_RANGE: Final = 0xA2
_CKR_PIN_LOCKED: Final = 0xA4
_CKR_USER_ALREADY_LOGGED_IN: Final = 0x100
_CKR_USER_NOT_LOGGED_IN: Final = 0x101
_CKF_OS_LOCKING_OK: Final = 0x2
_CKU_USER: Final = 1

_FUNCTION_NAMES: Final = (
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
    "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo", "C_InitToken",
    "C_InitPIN", "C_SetPIN", "C_OpenSession", "C_CloseSession", "C_CloseAllSessions",
    "C_GetSessionInfo", "C_GetOperationState", "C_SetOperationState", "C_Login", "C_Logout",
)  # fmt: skip
"""The head of CK_FUNCTION_LIST, in the order PKCS#11 v2.40 fixes (enough to reach C_Logout)."""


class _CkInitializeArgs(ctypes.Structure):
    _fields_ = [
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("pReserved", ctypes.c_void_p),
    ]


class _CkFunctionList(ctypes.Structure):
    _fields_ = [("version", ctypes.c_ubyte * 2)] + [(name, ctypes.c_void_p) for name in _FUNCTION_NAMES]


_VoidFn = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)
_LoginFn = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong)
_LogoutFn = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong)


class _Cryptoki:
    """C_Initialize with OS locking, C_Login/C_Logout on a session handle, through ctypes.

    ``dlopen`` of the path python-pkcs11 loaded returns the same module instance, so these calls
    act on the library python-pkcs11 uses. ctypes releases the GIL around them.
    """

    def __init__(self, path: str) -> None:
        dll = ctypes.CDLL(path)
        get_function_list = dll.C_GetFunctionList
        get_function_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_CkFunctionList))]
        get_function_list.restype = ctypes.c_ulong
        table = ctypes.POINTER(_CkFunctionList)()
        rv = get_function_list(ctypes.byref(table))
        if rv != _CKR_OK or not table:
            raise KeyModuleError(f"PKCS#11 library {path}: C_GetFunctionList failed (CKR 0x{rv:x})")
        functions = table.contents
        self._dll = dll  # keeps the library mapped as long as the function pointers are used
        self._initialize = _VoidFn(functions.C_Initialize)
        self._finalize = _VoidFn(functions.C_Finalize)
        self._login = _LoginFn(functions.C_Login)
        self._logout = _LogoutFn(functions.C_Logout)

    def reinitialize_with_os_locking(self) -> None:
        rv = self._finalize(None)
        if rv != _CKR_OK:
            raise KeyModuleError(f"PKCS#11 C_Finalize before re-initialisation failed (CKR 0x{rv:x})")
        args = _CkInitializeArgs(None, None, None, None, _CKF_OS_LOCKING_OK, None)
        rv = self._initialize(ctypes.byref(args))
        if rv != _CKR_OK:
            raise KeyModuleError(f"PKCS#11 C_Initialize with CKF_OS_LOCKING_OK failed (CKR 0x{rv:x})")

    def login(self, session_handle: int, pin: str) -> int:
        data = pin.encode("utf-8")
        return int(self._login(session_handle, _CKU_USER, data, len(data)))

    def logout(self, session_handle: int) -> int:
        return int(self._logout(session_handle))


# --- process-wide state: one initialised library per path, one login per token ----------------


@dataclass(slots=True)
class _Library:
    path: str
    lib: Any
    raw: _Cryptoki


class _Login:
    """The one logged-in user session of a token in this process, shared by every module on it."""

    def __init__(self, library: _Library, token_label: str, token: Any, session: Any, pin_tag: bytes) -> None:
        self.library = library
        self.token_label = token_label
        self.token = token
        self.session = session
        """Read-write session, logged in; admin operations use it under ``lock``."""
        self.pin_tag = pin_tag
        self.refs = 0
        self.lock = threading.RLock()


_GLOBAL_LOCK = threading.Lock()
_LIBRARIES: dict[str, _Library] = {}
_LOGINS: dict[tuple[str, str], _Login] = {}
_PIN_TAG_KEY: Final = secrets.token_bytes(32)


def _pin_tag(pin: str) -> bytes:
    """A keyed digest of the PIN to compare later logins with (the PIN itself is not kept here)."""
    return hmac.new(_PIN_TAG_KEY, pin.encode("utf-8"), hashlib.sha256).digest()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _open_library(library_path: Path, token_label: str) -> _Library:
    key = str(library_path.resolve())
    with _GLOBAL_LOCK:
        library = _LIBRARIES.get(key)
        if library is not None:
            return library
        if not Path(key).is_file():
            raise KeyModuleError(f"PKCS#11 library {library_path} for token {token_label!r} does not exist")
        try:
            lib = pkcs11.lib(key)
        except (p11err.PKCS11Error, OSError) as exc:
            raise KeyModuleError(
                f"cannot load PKCS#11 library {library_path} for token {token_label!r}: {_describe(exc)}"
            ) from exc
        raw = _Cryptoki(key)
        raw.reinitialize_with_os_locking()
        library = _Library(path=key, lib=lib, raw=raw)
        _LIBRARIES[key] = library
        log.info("PKCS#11 library %s initialised with CKF_OS_LOCKING_OK", key)
        return library


def _find_token(library: _Library, token_label: str) -> Any:
    try:
        return library.lib.get_token(token_label=token_label)
    except p11err.NoSuchToken as exc:
        raise KeyModuleError(f"PKCS#11 token {token_label!r} is not present in {library.path}") from exc
    except p11err.MultipleTokensReturned as exc:
        raise KeyModuleError(f"more than one PKCS#11 token is labelled {token_label!r}") from exc
    except p11err.PKCS11Error as exc:
        raise KeyModuleError(f"PKCS#11 token {token_label!r}: cannot list tokens ({_describe(exc)})") from exc


def _login_error(rv: int, token_label: str) -> SignerError:
    if rv in (_CKR_PIN_INCORRECT, _CKR_PIN_INVALID, _CKR_PIN_LEN_RANGE):
        return WrongPin(f"wrong PIN for PKCS#11 token {token_label!r}")
    if rv == _CKR_PIN_LOCKED:
        return WrongPin(f"the user PIN of PKCS#11 token {token_label!r} is locked")
    return KeyModuleError(f"PKCS#11 token {token_label!r}: C_Login failed (CKR 0x{rv:x})")


def _acquire_login(library: _Library, token_label: str, pin: str) -> _Login:
    tag = _pin_tag(pin)
    with _GLOBAL_LOCK:
        login = _LOGINS.get((library.path, token_label))
        if login is not None:
            if not hmac.compare_digest(login.pin_tag, tag):
                raise WrongPin(f"wrong PIN for PKCS#11 token {token_label!r}")
            login.refs += 1
            return login
        token = _find_token(library, token_label)
        try:
            session = token.open(rw=True)
        except p11err.PKCS11Error as exc:
            raise KeyModuleError(f"PKCS#11 token {token_label!r}: cannot open a session ({_describe(exc)})") from exc
        rv = library.raw.login(session.handle, pin)
        if rv == _CKR_USER_ALREADY_LOGGED_IN:
            # Logged in by someone else in this process, outside this module: check the PIN anew.
            library.raw.logout(session.handle)
            rv = library.raw.login(session.handle, pin)
        if rv != _CKR_OK:
            with contextlib.suppress(p11err.PKCS11Error):
                session.close()
            raise _login_error(rv, token_label)
        login = _Login(library, token_label, token, session, tag)
        login.refs = 1
        _LOGINS[(library.path, token_label)] = login
        return login


_LOGIN_CHILD = """
import sys
import pkcs11
from pkcs11 import exceptions as e
try:
    token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])
    session = token.open(user_pin=sys.stdin.readline().rstrip("\\n"))
except (e.PinIncorrect, e.PinInvalid, e.PinLenRange):
    print("wrong")
except e.PinLocked:
    print("locked")
except e.PKCS11Error as exc:
    print("error " + type(exc).__name__)
else:
    session.close()
    print("ok")
"""
LOGIN_CHILD_TIMEOUT_S: Final = 30.0


def _token_login(library_path: str, token_label: str, pin: str) -> bool:
    """C_Login with ``pin`` on the token from a child process (a login check the token counts).

    True if the token accepts it, False for a wrong PIN; WrongPin when the token has locked the user
    PIN; KeyModuleError when the check could not run. The PIN goes through a pipe, never argv.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LOGIN_CHILD, library_path, token_label],
            input=pin + "\n",
            capture_output=True,
            text=True,
            timeout=LOGIN_CHILD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KeyModuleError(f"PKCS#11 token {token_label!r}: the PIN check could not run ({_describe(exc)})") from exc
    answer = done.stdout.strip()
    if answer == "ok":
        return True
    if answer == "wrong":
        return False
    if answer == "locked":
        raise WrongPin(f"the user PIN of PKCS#11 token {token_label!r} is locked")
    raise KeyModuleError(
        f"PKCS#11 token {token_label!r}: the PIN check failed ({answer or f'exit code {done.returncode}'})"
    )


def _release_login(login: _Login) -> None:
    with _GLOBAL_LOCK:
        login.refs -= 1
        if login.refs > 0:
            return
        _LOGINS.pop((login.library.path, login.token_label), None)
        with login.lock:
            login.library.raw.logout(login.session.handle)
            with contextlib.suppress(p11err.PKCS11Error):
                login.session.close()


# --- encodings --------------------------------------------------------------------------------


def _der_octet_string(value: bytes) -> bytes:
    if len(value) < 0x80:
        return bytes([0x04, len(value)]) + value
    if len(value) < 0x100:
        return bytes([0x04, 0x81, len(value)]) + value
    raise ValueError("octet string too long")


def _unwrap_ec_point(point: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING (SoftHSM, the standard); some tokens give it raw."""
    if len(point) >= 2 and point[0] == 0x04 and point[1] == len(point) - 2:
        return point[2:]
    if len(point) >= 3 and point[0] == 0x04 and point[1] == 0x81 and point[2] == len(point) - 3:
        return point[3:]
    return point


def _compress_secp256k1(uncompressed: bytes) -> bytes:
    if len(uncompressed) != 65 or uncompressed[0] != 0x04:
        raise ValueError("not an uncompressed secp256k1 point")
    return bytes([2 + (uncompressed[64] & 1)]) + uncompressed[1:33]


def _decompress_secp256k1(compressed: bytes) -> bytes:
    x = int.from_bytes(compressed[1:33], "big")
    y = pow((pow(x, 3, _SECP256K1_P) + 7) % _SECP256K1_P, (_SECP256K1_P + 1) // 4, _SECP256K1_P)
    if (y & 1) != (compressed[0] & 1):
        y = _SECP256K1_P - y
    return b"\x04" + compressed[1:33] + y.to_bytes(32, "big")


# --- the module -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    info: KeyInfo
    cka_id: bytes | None
    """CKA_ID of the token objects; None for a sealed BLS key."""


@dataclass(frozen=True, slots=True)
class _SealedBlob:
    name: str
    public_key: bytes
    iv: bytes
    ciphertext: bytes
    """AES-GCM ciphertext with its 16-byte tag appended."""


class _PooledSession:
    __slots__ = ("keys", "session")

    def __init__(self, session: Any) -> None:
        self.session = session
        self.keys: dict[bytes, Any] = {}
        """public key -> private key object bound to this session."""


class Pkcs11KeyModule:
    """A KeyModule on a PKCS#11 token selected by label (see the module docstring)."""

    kind = "pkcs11"

    def __init__(
        self,
        library_path: Path,
        token_label: str,
        pin: str,
        data_dir: Path,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.library_path = Path(library_path)
        self.token_label = token_label
        self._pin = pin
        self.data_dir = Path(data_dir)
        self.pool_size = pool_size
        self._state_lock = threading.RLock()
        self._login: _Login | None = None
        self._pool: queue.LifoQueue[_PooledSession] = queue.LifoQueue()
        self._sessions: list[_PooledSession] = []
        self._keys: dict[bytes, _Entry] = {}
        self._names: dict[str, bytes] = {}
        self._bls_secrets: dict[bytes, bytes] = {}
        """public key -> 32-byte secret; a plain dict so a forked worker inherits it."""
        self._loaded = False

    def __repr__(self) -> str:
        return f"Pkcs11KeyModule(token_label={self.token_label!r}, unlocked={self.unlocked})"

    @property
    def sealed_file(self) -> Path:
        return self.data_dir / SEALED_FILE_NAME

    # --- errors at the edge ---------------------------------------------------------------

    def _translate(self, exc: p11err.PKCS11Error, action: str) -> SignerError:
        label = self.token_label
        if isinstance(exc, p11err.PinIncorrect | p11err.PinInvalid | p11err.PinLenRange):
            return WrongPin(f"wrong PIN for PKCS#11 token {label!r}")
        if isinstance(exc, p11err.PinLocked):
            return WrongPin(f"the user PIN of PKCS#11 token {label!r} is locked")
        if isinstance(
            exc,
            p11err.TokenNotPresent
            | p11err.DeviceRemoved
            | p11err.TokenNotRecognised
            | p11err.SlotIDInvalid
            | p11err.NoSuchToken,
        ):
            return KeyModuleError(f"PKCS#11 token {label!r} is gone ({action}: {_describe(exc)})")
        if isinstance(exc, p11err.SessionClosed | p11err.SessionHandleInvalid | p11err.UserNotLoggedIn):
            return KeyModuleError(f"PKCS#11 token {label!r}: session lost during {action} ({_describe(exc)})")
        if isinstance(exc, p11err.ObjectHandleInvalid | p11err.KeyHandleInvalid):
            return KeyModuleError(
                f"PKCS#11 token {label!r}: a key object vanished during {action} "
                f"(token removed or changed?) ({_describe(exc)})"
            )
        return KeyModuleError(f"PKCS#11 token {label!r}: {action} failed ({_describe(exc)})")

    @contextlib.contextmanager
    def _edge(self, action: str) -> Iterator[None]:
        try:
            yield
        except p11err.PKCS11Error as exc:
            raise self._translate(exc, action) from exc

    # --- lock / unlock --------------------------------------------------------------------

    @property
    def unlocked(self) -> bool:
        return self._login is not None

    def verify_pin(self, pin: str) -> bool:
        """True iff ``pin`` is the token's user PIN. Never logs or reports the PIN.

        While this process is logged in, the right PIN is recognised from the keyed tag kept at
        login (constant time). A guess that does not match goes to the token's own C_Login, where
        the token counts wrong PINs (and may lock the user PIN, per its policy): PKCS#11 login state
        belongs to the process, so C_Login here would answer CKR_USER_ALREADY_LOGGED_IN without
        looking at the PIN, and a short-lived child process logs in instead (``_token_login``).
        """
        library = _open_library(self.library_path, self.token_label)
        with _GLOBAL_LOCK:
            login = _LOGINS.get((library.path, self.token_label))
        if login is not None:
            if hmac.compare_digest(login.pin_tag, _pin_tag(pin)):
                return True
            return _token_login(library.path, self.token_label, pin)
        with _GLOBAL_LOCK:
            token = _find_token(library, self.token_label)
            with self._edge("PIN check"):
                session = token.open()
            try:
                rv = library.raw.login(session.handle, pin)
                if rv == _CKR_OK:
                    library.raw.logout(session.handle)
                    return True
                error = _login_error(rv, self.token_label)
                if isinstance(error, WrongPin):
                    return False
                raise error
            finally:
                with contextlib.suppress(p11err.PKCS11Error):
                    session.close()

    def unlock(self) -> None:
        with self._state_lock:
            if self._login is not None:
                return
            library = _open_library(self.library_path, self.token_label)
            login = _acquire_login(library, self.token_label, self._pin)
            try:
                with self._edge("opening sessions"):
                    for _ in range(self.pool_size):
                        pooled = _PooledSession(login.token.open())
                        self._sessions.append(pooled)
                        self._pool.put(pooled)
                self._login = login
                entries = self._load_token_keys()
                sealed = self._read_sealed()
                secrets_by_key = self._unseal_all(sealed)
            except BaseException:
                self._close_sessions()
                self._login = None
                _release_login(login)
                raise
            self._keys.clear()
            self._names.clear()
            for entry in entries:
                self._index(entry)
            for blob in sealed:
                self._index(
                    _Entry(
                        KeyInfo(self._bls_handle(blob.public_key), blob.name, Scheme.BLS, blob.public_key),
                        None,
                    )
                )
            self._bls_secrets.clear()
            self._bls_secrets.update(secrets_by_key)
            self._loaded = True
            log.info(
                "PKCS#11 module on token %r unlocked: %d token keys, %d sealed BLS keys",
                self.token_label,
                len(entries),
                len(sealed),
            )

    def lock(self) -> None:
        with self._state_lock:
            self._bls_secrets.clear()
            login, self._login = self._login, None
            self._close_sessions()
            if login is not None:
                _release_login(login)

    def close(self) -> None:
        self.lock()

    def _close_sessions(self) -> None:
        sessions, self._sessions = self._sessions, []
        self._pool = queue.LifoQueue()
        for pooled in sessions:
            pooled.keys.clear()
            with contextlib.suppress(p11err.PKCS11Error):
                pooled.session.close()

    def _require_login(self) -> _Login:
        login = self._login
        if login is None:
            raise KeyModuleError(f"PKCS#11 module on token {self.token_label!r} is locked")
        return login

    # --- listing --------------------------------------------------------------------------

    def list_keys(self) -> list[KeyInfo]:
        with self._state_lock:
            if not self._loaded:
                raise KeyModuleError(f"PKCS#11 module on token {self.token_label!r} was never unlocked")
            return sorted((e.info for e in self._keys.values()), key=lambda info: info.name)

    def key_info(self, public_key: bytes) -> KeyInfo:
        return self._entry(public_key).info

    def _index(self, entry: _Entry) -> None:
        self._keys[entry.info.public_key] = entry
        self._names[entry.info.name] = entry.info.public_key

    def _entry(self, public_key: bytes) -> _Entry:
        entry = self._keys.get(bytes(public_key))
        if entry is None:
            raise UnknownKey(f"no key with public key 0x{bytes(public_key).hex()} in this module")
        return entry

    @staticmethod
    def _bls_handle(public_key: bytes) -> str:
        return "sealed:" + public_key.hex()[:16]

    def _load_token_keys(self) -> list[_Entry]:
        login = self._require_login()
        entries: list[_Entry] = []
        with login.lock, self._edge("listing keys"):
            session = login.session
            private_ids = {
                bytes(obj[Attribute.ID])
                for obj in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
                if obj[Attribute.KEY_TYPE] in (KeyType.EC, KeyType.EC_EDWARDS)
            }
            for pub in session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}):
                key_type = pub[Attribute.KEY_TYPE]
                if key_type not in (KeyType.EC, KeyType.EC_EDWARDS):
                    continue
                cka_id = bytes(pub[Attribute.ID])
                if cka_id not in private_ids:
                    continue
                params = bytes(pub[Attribute.EC_PARAMS])
                point = _unwrap_ec_point(bytes(pub[Attribute.EC_POINT]))
                if key_type == KeyType.EC and params == SECP256K1_EC_PARAMS and len(point) == 65:
                    scheme, public_key = Scheme.SECP256K1, _compress_secp256k1(point)
                elif key_type == KeyType.EC_EDWARDS and len(point) == 32:
                    scheme, public_key = Scheme.ED25519, point
                else:
                    continue
                entries.append(_Entry(KeyInfo(cka_id.hex(), str(pub[Attribute.LABEL]), scheme, public_key), cka_id))
        return entries

    # --- creating, importing, deleting ----------------------------------------------------

    def _check_new(self, name: str, public_key: bytes | None = None) -> None:
        check_account_name(name)
        if name in self._names:
            raise MalformedRequest(f"account name {name!r} is already in use")
        if public_key is not None and public_key in self._keys:
            existing = self._keys[public_key].info.name
            raise MalformedRequest(f"public key 0x{public_key.hex()} is already present as {existing!r}")

    def generate(self, name: str, scheme: Scheme) -> KeyInfo:
        scheme = Scheme(scheme)
        with self._state_lock:
            login = self._require_login()
            self._check_new(name)
            if scheme is Scheme.BLS:
                return self._add_bls(name, bls.random_secret())
            cka_id = secrets.token_bytes(16)
            common = {Attribute.TOKEN: True, Attribute.LABEL: name, Attribute.ID: cka_id}
            if scheme is Scheme.SECP256K1:
                key_type, mechanism, params = KeyType.EC, Mechanism.EC_KEY_PAIR_GEN, SECP256K1_EC_PARAMS
            else:
                key_type, mechanism, params = (
                    KeyType.EC_EDWARDS,
                    Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                    ED25519_EC_PARAMS,
                )
            with login.lock, self._edge(f"generating a {scheme} key"):
                pub, _ = login.session.generate_keypair(
                    key_type,
                    0,
                    store=True,
                    mechanism=mechanism,
                    public_template={
                        **common,
                        Attribute.EC_PARAMS: params,
                        Attribute.VERIFY: True,
                        Attribute.ENCRYPT: False,
                        Attribute.WRAP: False,
                        Attribute.PRIVATE: False,
                    },
                    private_template={**common, **self._private_attributes()},
                )
                point = _unwrap_ec_point(bytes(pub[Attribute.EC_POINT]))
            public_key = _compress_secp256k1(point) if scheme is Scheme.SECP256K1 else point
            entry = _Entry(KeyInfo(cka_id.hex(), name, scheme, public_key), cka_id)
            self._index(entry)
            return entry.info

    @staticmethod
    def _private_attributes() -> dict[Any, Any]:
        return {
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.PRIVATE: True,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.DERIVE: False,
            Attribute.UNWRAP: False,
        }

    def import_secret(self, name: str, scheme: Scheme, secret: bytes) -> KeyInfo:
        return self.import_secrets([(name, scheme, secret)])[0]

    def import_secrets(self, items: Sequence[tuple[str, Scheme, bytes]]) -> list[KeyInfo]:
        """Import many secrets, all or nothing; the BLS ones are sealed in one file write."""
        with self._state_lock:
            login = self._require_login()
            prepared: list[tuple[str, Scheme, bytes, bytes]] = []
            names: set[str] = set()
            public_keys: set[bytes] = set()
            for name, scheme_value, secret_value in items:
                scheme, secret = Scheme(scheme_value), bytes(secret_value)
                if scheme is Scheme.BLS:
                    public_key = bls.secret_to_public(secret)
                elif len(secret) != 32:
                    raise MalformedRequest(f"a {scheme} secret must be 32 bytes")
                elif scheme is Scheme.SECP256K1:
                    public_key = secp256k1.public_key(secret)
                else:
                    public_key = ed25519.public_key(secret)
                self._check_new(name, public_key)
                if name in names:
                    raise MalformedRequest(f"account name {name!r} appears twice in one import")
                if public_key in public_keys:
                    raise MalformedRequest(f"public key 0x{public_key.hex()} appears twice in one import")
                names.add(name)
                public_keys.add(public_key)
                prepared.append((name, scheme, secret, public_key))
            created: list[_Entry] = []
            try:
                for name, scheme, secret, public_key in prepared:
                    if scheme is not Scheme.BLS:
                        created.append(self._create_token_key(login, name, scheme, secret, public_key))
                bls_infos = self._seal_bls(login, [(n, s, pk) for n, sc, s, pk in prepared if sc is Scheme.BLS])
            except BaseException:
                self._destroy_token_objects(login, [e.cka_id for e in created if e.cka_id is not None])
                raise
            by_key = {e.info.public_key: e.info for e in created} | {i.public_key: i for i in bls_infos}
            for entry in created:
                self._index(entry)
            return [by_key[public_key] for _, _, _, public_key in prepared]

    def generate_many(self, names: Sequence[str], scheme: Scheme) -> list[KeyInfo]:
        return [self.generate(name, scheme) for name in names]

    def _create_token_key(self, login: _Login, name: str, scheme: Scheme, secret: bytes, public_key: bytes) -> _Entry:
        if scheme is Scheme.SECP256K1:
            key_type, params = KeyType.EC, SECP256K1_EC_PARAMS
            point = _der_octet_string(_decompress_secp256k1(public_key))
        else:
            key_type, params = KeyType.EC_EDWARDS, ED25519_EC_PARAMS
            point = _der_octet_string(public_key)
        cka_id = secrets.token_bytes(16)
        common = {
            Attribute.TOKEN: True,
            Attribute.LABEL: name,
            Attribute.ID: cka_id,
            Attribute.KEY_TYPE: key_type,
            Attribute.EC_PARAMS: params,
        }
        with login.lock, self._edge(f"importing a {scheme} key"):
            try:
                login.session.create_object(
                    {
                        **common,
                        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                        Attribute.VALUE: secret,
                        **self._private_attributes(),
                    }
                )
                login.session.create_object(
                    {
                        **common,
                        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                        Attribute.EC_POINT: point,
                        Attribute.VERIFY: True,
                        Attribute.ENCRYPT: False,
                        Attribute.WRAP: False,
                        Attribute.PRIVATE: False,
                    }
                )
            except p11err.PKCS11Error:
                self._destroy_token_objects(login, [cka_id])
                raise
        return _Entry(KeyInfo(cka_id.hex(), name, scheme, public_key), cka_id)

    def _destroy_token_objects(self, login: _Login, cka_ids: list[bytes]) -> None:
        """Best-effort removal of objects created by an import that is being rolled back."""
        with login.lock:
            for cka_id in cka_ids:
                with contextlib.suppress(p11err.PKCS11Error):
                    for obj in list(login.session.get_objects({Attribute.ID: cka_id})):
                        obj.destroy()

    def delete(self, public_key: bytes) -> KeyInfo:
        public_key = bytes(public_key)
        with self._state_lock:
            login = self._require_login()
            entry = self._entry(public_key)
            if entry.cka_id is None:
                sealed = [b for b in self._read_sealed() if b.public_key != public_key]
                self._write_sealed(sealed)
                self._bls_secrets.pop(public_key, None)
            else:
                with login.lock, self._edge("deleting a key"):
                    for obj in list(login.session.get_objects({Attribute.ID: entry.cka_id})):
                        obj.destroy()
                for pooled in self._sessions:
                    pooled.keys.pop(public_key, None)
            del self._keys[public_key]
            self._names.pop(entry.info.name, None)
            return entry.info

    # --- BLS: sealed by the token's AES key -----------------------------------------------

    def _add_bls(self, name: str, secret: bytes) -> KeyInfo:
        public_key = bls.secret_to_public(secret)
        self._check_new(name, public_key)
        return self._seal_bls(self._require_login(), [(name, secret, public_key)])[0]

    def _seal_bls(self, login: _Login, items: list[tuple[str, bytes, bytes]]) -> list[KeyInfo]:
        """Seal (name, secret, public_key) triples through the token, then write the file once."""
        if not items:
            return []
        blobs: list[_SealedBlob] = []
        with login.lock, self._edge("sealing BLS keys"):
            seal_key = self._seal_key(create=True)
            for name, secret, public_key in items:
                iv = secrets.token_bytes(12)
                param = GCMParams(iv, public_key)
                ciphertext = bytes(seal_key.encrypt(secret, mechanism=Mechanism.AES_GCM, mechanism_param=param))
                blobs.append(_SealedBlob(name, public_key, iv, ciphertext))
        self._write_sealed(self._read_sealed() + blobs)
        infos: list[KeyInfo] = []
        for name, secret, public_key in items:
            self._bls_secrets[public_key] = secret
            info = KeyInfo(self._bls_handle(public_key), name, Scheme.BLS, public_key)
            self._index(_Entry(info, None))
            infos.append(info)
        return infos

    def _seal_key(self, *, create: bool) -> Any:
        """The token's AES-256 sealing key (caller holds the login lock and the pkcs11 edge)."""
        session = self._require_login().session
        template = {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.LABEL: SEAL_KEY_LABEL,
        }
        found = list(session.get_objects(template))
        if len(found) > 1:
            raise KeyModuleError(f"PKCS#11 token {self.token_label!r} holds {len(found)} BLS sealing keys")
        if found:
            return found[0]
        if not create:
            return None
        return session.generate_key(
            KeyType.AES,
            256,
            label=SEAL_KEY_LABEL,
            store=True,
            template={
                Attribute.TOKEN: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.PRIVATE: True,
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True,
                Attribute.WRAP: False,
                Attribute.UNWRAP: False,
            },
        )

    def _unseal_all(self, sealed: list[_SealedBlob]) -> dict[bytes, bytes]:
        if not sealed:
            return {}
        login = self._require_login()
        opened: dict[bytes, bytes] = {}
        with login.lock:
            with self._edge("finding the BLS sealing key"):
                seal_key = self._seal_key(create=False)
            if seal_key is None:
                raise ModuleTampered(
                    f"{self.sealed_file} holds sealed BLS keys but token {self.token_label!r} "
                    "has no sealing key (wrong token?)"
                )
            for blob in sealed:
                where = f"sealed BLS key 0x{blob.public_key.hex()} in {self.sealed_file}"
                try:
                    secret = bytes(
                        seal_key.decrypt(
                            blob.ciphertext,
                            mechanism=Mechanism.AES_GCM,
                            mechanism_param=GCMParams(blob.iv, blob.public_key),
                        )
                    )
                except (
                    p11err.GeneralError,
                    p11err.EncryptedDataInvalid,
                    p11err.EncryptedDataLenRange,
                ) as exc:
                    raise ModuleTampered(
                        f"{where} does not open under token {self.token_label!r} (tampered, or another token)"
                    ) from exc
                except p11err.PKCS11Error as exc:
                    raise self._translate(exc, "unsealing BLS keys") from exc
                try:
                    matches = bls.secret_to_public(secret) == blob.public_key
                except MalformedRequest:
                    matches = False
                if not matches:
                    raise ModuleTampered(f"{where} does not match its public key")
                opened[blob.public_key] = secret
        return opened

    def _read_sealed(self) -> list[_SealedBlob]:
        path = self.sealed_file
        try:
            with path.open("rb") as fh:
                raw = read_at_most(fh, MAX_SEALED_FILE_BYTES)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeyModuleError(f"cannot read {path}: {exc.strerror}") from exc
        doc = load_json(raw, what=str(path), max_bytes=MAX_SEALED_FILE_BYTES, error=ModuleTampered)
        try:
            if doc.get("version") != SEALED_FILE_VERSION:
                raise ModuleTampered(f"{path} has unknown version {doc.get('version')!r}")
            return [
                _SealedBlob(
                    name=str(item["name"]),
                    public_key=bytes.fromhex(item["public_key"]),
                    iv=bytes.fromhex(item["iv"]),
                    ciphertext=bytes.fromhex(item["ciphertext"]),
                )
                for item in doc["keys"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModuleTampered(f"{path} is not a valid sealed-key file ({type(exc).__name__})") from exc

    def _write_sealed(self, sealed: list[_SealedBlob]) -> None:
        path = self.sealed_file
        doc = {
            "version": SEALED_FILE_VERSION,
            "token_label": self.token_label,
            "keys": [
                {
                    "name": b.name,
                    "public_key": b.public_key.hex(),
                    "iv": b.iv.hex(),
                    "ciphertext": b.ciphertext.hex(),
                }
                for b in sealed
            ],
        }
        data = json.dumps(doc, indent=1).encode("utf-8")
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            dir_fd = os.open(self.data_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise KeyModuleError(f"cannot write {path}: {exc.strerror}") from exc

    # --- signing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self) -> Iterator[_PooledSession]:
        self._require_login()
        pool = self._pool
        try:
            pooled = pool.get(timeout=SESSION_WAIT_S)
        except queue.Empty as exc:
            raise KeyModuleError(
                f"PKCS#11 token {self.token_label!r}: no free session after {SESSION_WAIT_S:.0f} s"
            ) from exc
        try:
            yield pooled
        finally:
            if pooled in self._sessions:
                pool.put(pooled)

    def _private_key(self, pooled: _PooledSession, entry: _Entry) -> Any:
        key = pooled.keys.get(entry.info.public_key)
        if key is None:
            found = list(
                pooled.session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: entry.cka_id})
            )
            if len(found) != 1:
                raise KeyModuleError(
                    f"PKCS#11 token {self.token_label!r}: {len(found)} private keys for {entry.info.name!r}"
                )
            key = found[0]
            pooled.keys[entry.info.public_key] = key
        return key

    def _sign_one(self, pooled: _PooledSession | None, public_key: bytes, message: bytes) -> bytes:
        entry = self._entry(public_key)
        scheme = entry.info.scheme
        if scheme is Scheme.BLS:
            secret = self._bls_secrets.get(entry.info.public_key)
            if secret is None:
                raise KeyModuleError(f"PKCS#11 module on token {self.token_label!r} is locked")
            if len(message) != 32:
                raise MalformedRequest("a BLS signing root must be 32 bytes")
            return bls.sign(secret, message)
        assert pooled is not None
        with self._edge(f"signing with {entry.info.name!r}"):
            key = self._private_key(pooled, entry)
            if scheme is Scheme.SECP256K1:
                if len(message) != 32:
                    raise MalformedRequest("a secp256k1 message must be the 32-byte digest")
                signature = bytes(key.sign(bytes(message), mechanism=Mechanism.ECDSA))
            else:
                signature = bytes(key.sign(bytes(message), mechanism=Mechanism.EDDSA))
        if scheme is Scheme.SECP256K1:
            return secp256k1.normalize_low_s(signature)
        return signature

    def sign(self, public_key: bytes, message: bytes) -> bytes:
        entry = self._entry(public_key)
        if entry.info.scheme is Scheme.BLS:
            self._require_login()
            return self._sign_one(None, public_key, message)
        with self._session() as pooled:
            return self._sign_one(pooled, public_key, message)

    def sign_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        for public_key, _ in items:
            self._entry(public_key)
        with self._session() as pooled:
            return [self._sign_one(pooled, public_key, message) for public_key, message in items]

    def sign_recoverable(self, public_key: bytes, digest: bytes) -> tuple[bytes, int]:
        """secp256k1: (64-byte low-S r||s, recovery id) -- for callers that need the recovery id."""
        entry = self._entry(public_key)
        if entry.info.scheme is not Scheme.SECP256K1:
            raise UnsupportedScheme(f"{entry.info.name!r} is a {entry.info.scheme} key, not secp256k1")
        signature = self.sign(public_key, digest)
        return signature, secp256k1.recovery_id(entry.info.public_key, digest, signature)
