"""The process-wide login registry: one logged-in user session per token, shared by every module.

Login state belongs to the application in PKCS#11, not to a session: each token is logged in once
per process, whatever the number of ``Pkcs11KeyModule`` instances on it, and logged out when the
last of them locks. A later login must give the same PIN; it is compared with a keyed digest made
at the first login (the PIN itself is not kept here). The PIN is never logged nor put in an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import subprocess
import sys
import threading
from typing import Any, Final

from pkcs11 import exceptions as p11err

from signer.errors import KeyModuleError, WrongPin
from signer.keys.pkcs11.cryptoki import (
    CKR_OK,
    CKR_USER_ALREADY_LOGGED_IN,
    LIBRARIES_LOCK,
    Library,
    describe,
    edge,
    find_token,
    login_error,
)

LOGIN_CHILD_TIMEOUT_S: Final = 30.0


class Login:
    """The one logged-in user session of a token in this process, shared by every module on it."""

    def __init__(self, library: Library, token_label: str, token: Any, session: Any, pin_tag: bytes) -> None:
        self.library = library
        self.token_label = token_label
        self.token = token
        self.session = session
        """Read-write session, logged in; admin operations use it under ``lock``."""
        self.pin_tag = pin_tag
        self.refs = 0
        self.lock = threading.RLock()


_LOGINS: dict[tuple[str, str], Login] = {}
_PIN_TAG_KEY: Final = secrets.token_bytes(32)


def _pin_tag(pin: str) -> bytes:
    """A keyed digest of the PIN to compare later logins with (the PIN itself is not kept here)."""
    return hmac.new(_PIN_TAG_KEY, pin.encode("utf-8"), hashlib.sha256).digest()


def acquire_login(library: Library, token_label: str, pin: str) -> Login:
    """Log in to the token (or share this process's login, if the PIN is the same); WrongPin else."""
    tag = _pin_tag(pin)
    with LIBRARIES_LOCK:
        login = _LOGINS.get((library.path, token_label))
        if login is not None:
            if not hmac.compare_digest(login.pin_tag, tag):
                raise WrongPin(f"wrong PIN for PKCS#11 token {token_label!r}")
            login.refs += 1
            return login
        token = find_token(library, token_label)
        try:
            session = token.open(rw=True)
        except p11err.PKCS11Error as exc:
            raise KeyModuleError(f"PKCS#11 token {token_label!r}: cannot open a session ({describe(exc)})") from exc
        rv = library.raw.login(session.handle, pin)
        if rv == CKR_USER_ALREADY_LOGGED_IN:
            # Logged in by someone else in this process, outside this module: check the PIN anew.
            library.raw.logout(session.handle)
            rv = library.raw.login(session.handle, pin)
        if rv != CKR_OK:
            with contextlib.suppress(p11err.PKCS11Error):
                session.close()
            raise login_error(rv, token_label)
        login = Login(library, token_label, token, session, tag)
        login.refs = 1
        _LOGINS[(library.path, token_label)] = login
        return login


def release_login(login: Login) -> None:
    """One user fewer; the last one logs the token out and closes the login session."""
    with LIBRARIES_LOCK:
        login.refs -= 1
        if login.refs > 0:
            return
        _LOGINS.pop((login.library.path, login.token_label), None)
        with login.lock:
            login.library.raw.logout(login.session.handle)
            with contextlib.suppress(p11err.PKCS11Error):
                login.session.close()


def verify_pin(library: Library, token_label: str, pin: str) -> bool:
    """True iff ``pin`` is the token's user PIN. Never logs or reports the PIN.

    While this process is logged in, the right PIN is recognised from the keyed tag kept at login
    (constant time). A guess that does not match goes to the token's own C_Login, where the token
    counts wrong PINs (and may lock the user PIN, per its policy): PKCS#11 login state belongs to
    the process, so C_Login here would answer CKR_USER_ALREADY_LOGGED_IN without looking at the
    PIN, and a short-lived child process logs in instead (``_token_login``).
    """
    with LIBRARIES_LOCK:
        login = _LOGINS.get((library.path, token_label))
    if login is not None:
        if hmac.compare_digest(login.pin_tag, _pin_tag(pin)):
            return True
        return _token_login(library.path, token_label, pin)
    with LIBRARIES_LOCK:
        token = find_token(library, token_label)
        with edge(token_label, "PIN check"):
            session = token.open()
        try:
            rv = library.raw.login(session.handle, pin)
            if rv == CKR_OK:
                library.raw.logout(session.handle)
                return True
            error = login_error(rv, token_label)
            if isinstance(error, WrongPin):
                return False
            raise error
        finally:
            with contextlib.suppress(p11err.PKCS11Error):
                session.close()


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
        raise KeyModuleError(f"PKCS#11 token {token_label!r}: the PIN check could not run ({describe(exc)})") from exc
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
