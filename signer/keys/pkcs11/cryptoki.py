"""The Cryptoki library: loading it once per process with OS locking, raw calls, and its errors.

python-pkcs11 0.10 calls ``C_Initialize(NULL)``; SoftHSM2 then disables its own locking and two
threads on two sessions corrupt its heap. Right after python-pkcs11 has loaded the library (once per
process), ``open_library`` finalises it and initialises it again through ctypes with
``CK_C_INITIALIZE_ARGS{flags = CKF_OS_LOCKING_OK}``; python-pkcs11 keeps using the same, now
thread-safe, module instance. C_Login/C_Logout go through ctypes too, to see their return codes.

Every pkcs11 exception becomes a ``signer.errors`` error here (``translate``, ``edge``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pkcs11
from pkcs11 import exceptions as p11err

from signer.errors import KeyModuleError, SignerError, WrongPin

log = logging.getLogger("signer.keys.pkcs11")

CKR_OK: Final = 0x0
CKR_PIN_INCORRECT: Final = 0xA0
CKR_PIN_INVALID: Final = 0xA1
CKR_PIN_LEN_RANGE: Final = 0xA2
CKR_PIN_LOCKED: Final = 0xA4
CKR_USER_ALREADY_LOGGED_IN: Final = 0x100
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


class Cryptoki:
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
        if rv != CKR_OK or not table:
            raise KeyModuleError(f"PKCS#11 library {path}: C_GetFunctionList failed (CKR 0x{rv:x})")
        functions = table.contents
        self._dll = dll  # keeps the library mapped as long as the function pointers are used
        self._initialize = _VoidFn(functions.C_Initialize)
        self._finalize = _VoidFn(functions.C_Finalize)
        self._login = _LoginFn(functions.C_Login)
        self._logout = _LogoutFn(functions.C_Logout)

    def reinitialize_with_os_locking(self) -> None:
        rv = self._finalize(None)
        if rv != CKR_OK:
            raise KeyModuleError(f"PKCS#11 C_Finalize before re-initialisation failed (CKR 0x{rv:x})")
        args = _CkInitializeArgs(None, None, None, None, _CKF_OS_LOCKING_OK, None)
        rv = self._initialize(ctypes.byref(args))
        if rv != CKR_OK:
            raise KeyModuleError(f"PKCS#11 C_Initialize with CKF_OS_LOCKING_OK failed (CKR 0x{rv:x})")

    def login(self, session_handle: int, pin: str) -> int:
        data = pin.encode("utf-8")
        return int(self._login(session_handle, _CKU_USER, data, len(data)))

    def logout(self, session_handle: int) -> int:
        return int(self._logout(session_handle))


@dataclass(slots=True)
class Library:
    """One loaded, OS-locking Cryptoki library: python-pkcs11's handle and the raw calls."""

    path: str
    lib: Any
    raw: Cryptoki


LIBRARIES_LOCK = threading.Lock()
"""Guards the process-wide registries: loaded libraries here, logins in ``logins``."""
_LIBRARIES: dict[str, Library] = {}


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_library(library_path: Path, token_label: str) -> Library:
    """The library at ``library_path``, loaded and re-initialised once per process."""
    key = str(library_path.resolve())
    with LIBRARIES_LOCK:
        library = _LIBRARIES.get(key)
        if library is not None:
            return library
        if not Path(key).is_file():
            raise KeyModuleError(f"PKCS#11 library {library_path} for token {token_label!r} does not exist")
        try:
            lib = pkcs11.lib(key)
        except (p11err.PKCS11Error, OSError) as exc:
            raise KeyModuleError(
                f"cannot load PKCS#11 library {library_path} for token {token_label!r}: {describe(exc)}"
            ) from exc
        raw = Cryptoki(key)
        raw.reinitialize_with_os_locking()
        library = Library(path=key, lib=lib, raw=raw)
        _LIBRARIES[key] = library
        log.info("PKCS#11 library %s initialised with CKF_OS_LOCKING_OK", key)
        return library


def find_token(library: Library, token_label: str) -> Any:
    """The token labelled ``token_label`` (never chosen by slot number)."""
    try:
        return library.lib.get_token(token_label=token_label)
    except p11err.NoSuchToken as exc:
        raise KeyModuleError(f"PKCS#11 token {token_label!r} is not present in {library.path}") from exc
    except p11err.MultipleTokensReturned as exc:
        raise KeyModuleError(f"more than one PKCS#11 token is labelled {token_label!r}") from exc
    except p11err.PKCS11Error as exc:
        raise KeyModuleError(f"PKCS#11 token {token_label!r}: cannot list tokens ({describe(exc)})") from exc


def login_error(rv: int, token_label: str) -> SignerError:
    """The error for a C_Login return code other than CKR_OK."""
    if rv in (CKR_PIN_INCORRECT, CKR_PIN_INVALID, CKR_PIN_LEN_RANGE):
        return WrongPin(f"wrong PIN for PKCS#11 token {token_label!r}")
    if rv == CKR_PIN_LOCKED:
        return WrongPin(f"the user PIN of PKCS#11 token {token_label!r} is locked")
    return KeyModuleError(f"PKCS#11 token {token_label!r}: C_Login failed (CKR 0x{rv:x})")


_GONE = (
    p11err.TokenNotPresent,
    p11err.DeviceRemoved,
    p11err.TokenNotRecognised,
    p11err.SlotIDInvalid,
    p11err.NoSuchToken,
)
_SESSION_LOST = (p11err.SessionClosed, p11err.SessionHandleInvalid, p11err.UserNotLoggedIn)
_OBJECT_VANISHED = (p11err.ObjectHandleInvalid, p11err.KeyHandleInvalid)


def translate(exc: p11err.PKCS11Error, token_label: str, action: str) -> SignerError:
    """The named error for a pkcs11 exception raised while doing ``action`` on the token."""
    label = token_label
    if isinstance(exc, p11err.PinIncorrect | p11err.PinInvalid | p11err.PinLenRange):
        return WrongPin(f"wrong PIN for PKCS#11 token {label!r}")
    if isinstance(exc, p11err.PinLocked):
        return WrongPin(f"the user PIN of PKCS#11 token {label!r} is locked")
    if isinstance(exc, _GONE):
        return KeyModuleError(f"PKCS#11 token {label!r} is gone ({action}: {describe(exc)})")
    if isinstance(exc, _SESSION_LOST):
        return KeyModuleError(f"PKCS#11 token {label!r}: session lost during {action} ({describe(exc)})")
    if isinstance(exc, _OBJECT_VANISHED):
        return KeyModuleError(
            f"PKCS#11 token {label!r}: a key object vanished during {action} "
            f"(token removed or changed?) ({describe(exc)})"
        )
    return KeyModuleError(f"PKCS#11 token {label!r}: {action} failed ({describe(exc)})")


@contextlib.contextmanager
def edge(token_label: str, action: str) -> Iterator[None]:
    """Turn a pkcs11 exception raised in the body into its named error (``translate``)."""
    try:
        yield
    except p11err.PKCS11Error as exc:
        raise translate(exc, token_label, action) from exc
