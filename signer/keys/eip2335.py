"""EIP-2335 keystores: decrypt (import) and encrypt (tests, export of generated dev keys).

https://eips.ethereum.org/EIPS/eip-2335 : a KDF (scrypt or pbkdf2 with hmac-sha256) turns the
password (NFKD-normalised, control codes stripped, UTF-8) into a 32-byte decryption key; the
checksum is sha256(DK[16:32] || cipher.message); the cipher is aes-128-ctr with DK[0:16].

The keystore JSON is an I/O edge, so its shape is checked with pydantic; everything past parsing is
plain functions over frozen dataclasses. Error messages name the field that is wrong, never the
password or the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signer.errors import KdfLimitExceeded, MalformedKeystore, WrongPassword
from signer.jsondoc import load_json, read_at_most

_HEX = r"^(0x)?([0-9a-fA-F]{2})*$"
HexStr = Annotated[str, Field(pattern=_HEX)]

MAX_KEYSTORE_BYTES = 1024 * 1024
"""A keystore is about 1 KiB; a larger document is refused before it is parsed."""
MAX_KDF_MEMORY_BYTES = 1024 * 1024 * 1024
"""scrypt needs ``scrypt_memory(n, r, p)`` bytes; a keystore that needs more than 1 GiB is refused."""
STANDARD_SCRYPT_WORK = 2**18 * 8 * 1
"""n * r * p of the standard keystore (staking-deposit-cli: n=2**18, r=8, p=1; about a second)."""
STANDARD_PBKDF2_C = 2**18
"""c of the standard pbkdf2 keystore (staking-deposit-cli)."""
MAX_KDF_WORK = 4.0
"""Most KDF work one keystore may ask for, in standard keystores (``kdf_work``): scrypt n*r*p up to
2**23, pbkdf2 c up to 2**20. Real keystores use 1."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ScryptParams(_Model):
    # Upper bounds: check_kdf_limits, which names the limit a keystore is over.
    dklen: int = Field(ge=32, le=64)
    n: int = Field(ge=2)
    r: int = Field(ge=1)
    p: int = Field(ge=1)
    salt: HexStr


class _Pbkdf2Params(_Model):
    dklen: int = Field(ge=32, le=64)
    c: int = Field(ge=1)
    prf: Literal["hmac-sha256"]
    salt: HexStr


class _ScryptModule(_Model):
    function: Literal["scrypt"]
    params: _ScryptParams
    message: Literal[""]


class _Pbkdf2Module(_Model):
    function: Literal["pbkdf2"]
    params: _Pbkdf2Params
    message: Literal[""]


class _ChecksumModule(_Model):
    function: Literal["sha256"]
    params: dict[str, Any]
    message: Annotated[str, Field(pattern=r"^(0x)?[0-9a-fA-F]{64}$")]


class _CipherParams(_Model):
    iv: Annotated[str, Field(pattern=r"^(0x)?[0-9a-fA-F]{32}$")]


class _CipherModule(_Model):
    function: Literal["aes-128-ctr"]
    params: _CipherParams
    message: HexStr


class _Crypto(_Model):
    kdf: Annotated[_ScryptModule | _Pbkdf2Module, Field(discriminator="function")]
    checksum: _ChecksumModule
    cipher: _CipherModule


class _KeystoreModel(BaseModel):
    # Top-level extra fields (e.g. "name" written by some clients) are tolerated and ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)
    crypto: _Crypto
    pubkey: Annotated[str, Field(pattern=r"^(0x)?([0-9a-fA-F]{96})?$")] = ""
    path: str = ""
    uuid: str
    version: Literal[4]
    description: str = ""


def _unhex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


@dataclass(frozen=True, slots=True)
class KdfParams:
    """The KDF of a keystore: ``function`` is "scrypt" (n, r, p) or "pbkdf2" (c)."""

    function: Literal["scrypt", "pbkdf2"]
    salt: bytes
    dklen: int = 32
    n: int = 0
    r: int = 0
    p: int = 0
    c: int = 0


@dataclass(frozen=True, slots=True)
class Keystore:
    """A parsed EIP-2335 keystore (public parts and ciphertext only)."""

    kdf: KdfParams
    checksum: bytes
    iv: bytes
    ciphertext: bytes
    pubkey: bytes | None
    path: str
    uuid: str
    description: str


def scrypt_memory(n: int, r: int, p: int) -> int:
    """Bytes scrypt allocates: B (128*r*p) and V (128*r*(n+2)), as OpenSSL's EVP_PBE_scrypt counts
    them against ``maxmem``."""
    return 128 * r * (n + p + 2)


def kdf_work(kdf: KdfParams) -> float:
    """The KDF's cost in standard keystores (scrypt time grows with n*r*p, pbkdf2 with c)."""
    if kdf.function == "scrypt":
        return kdf.n * kdf.r * kdf.p / STANDARD_SCRYPT_WORK
    return kdf.c / STANDARD_PBKDF2_C


def check_kdf_limits(kdf: KdfParams, *, source: str = "keystore") -> None:
    """Refuse (KdfLimitExceeded, naming the parameters and the limit) a KDF over the memory cap or
    the work cap, before anything runs it."""
    if kdf.function == "scrypt":
        what = f"scrypt n={kdf.n}, r={kdf.r}, p={kdf.p}"
        memory = scrypt_memory(kdf.n, kdf.r, kdf.p)
        if memory > MAX_KDF_MEMORY_BYTES:
            raise KdfLimitExceeded(
                f"{source}: crypto.kdf.params: {what} needs {memory:,} bytes of memory "
                f"(128*r*(n+p+2)), over the limit of {MAX_KDF_MEMORY_BYTES:,} (1 GiB)"
            )
        limit = f"n*r*p at most {int(MAX_KDF_WORK * STANDARD_SCRYPT_WORK):,}"
    else:
        what = f"pbkdf2 c={kdf.c}"
        limit = f"c at most {int(MAX_KDF_WORK * STANDARD_PBKDF2_C):,}"
    if kdf_work(kdf) > MAX_KDF_WORK:
        raise KdfLimitExceeded(
            f"{source}: crypto.kdf.params: {what} is {kdf_work(kdf):,.1f} times the work of a standard "
            f"keystore, over the limit of {MAX_KDF_WORK:g} ({limit})"
        )


def parse_keystore(data: Mapping[str, Any] | str | bytes, *, source: str = "keystore") -> Keystore:
    """Check the EIP-2335 shape of ``data`` (a dict or JSON text) and the limits of its KDF
    (``check_kdf_limits``). Raises MalformedKeystore (KdfLimitExceeded for the limits)."""
    obj: Any = data
    if isinstance(data, str | bytes):
        obj = load_json(data, what=f"{source}: the keystore", max_bytes=MAX_KEYSTORE_BYTES, error=MalformedKeystore)
    try:
        model = _KeystoreModel.model_validate(obj)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors())
        raise MalformedKeystore(f"{source}: not an EIP-2335 keystore: {where}") from exc
    kdf_module = model.crypto.kdf
    if isinstance(kdf_module, _ScryptModule):
        sp = kdf_module.params
        if sp.n & (sp.n - 1):
            raise MalformedKeystore(f"{source}: crypto.kdf.params.n must be a power of two, got {sp.n}")
        kdf = KdfParams("scrypt", _unhex(sp.salt), sp.dklen, n=sp.n, r=sp.r, p=sp.p)
    else:
        pp = kdf_module.params
        kdf = KdfParams("pbkdf2", _unhex(pp.salt), pp.dklen, c=pp.c)
    check_kdf_limits(kdf, source=source)
    return Keystore(
        kdf=kdf,
        checksum=_unhex(model.crypto.checksum.message),
        iv=_unhex(model.crypto.cipher.params.iv),
        ciphertext=_unhex(model.crypto.cipher.message),
        pubkey=_unhex(model.pubkey) if model.pubkey else None,
        path=model.path,
        uuid=model.uuid,
        description=model.description,
    )


def load_keystore(path: Path) -> Keystore:
    """Read and parse a keystore file. Raises MalformedKeystore (also for an unreadable file)."""
    try:
        with path.open("rb") as fh:
            raw = read_at_most(fh, MAX_KEYSTORE_BYTES)
    except OSError as exc:
        raise MalformedKeystore(f"{path}: cannot read keystore: {exc.strerror}") from exc
    return parse_keystore(raw, source=str(path))


def normalize_password(password: str) -> bytes:
    """NFKD, then strip C0 (U+0000-U+001F), DEL (U+007F) and C1 (U+0080-U+009F); UTF-8."""
    normalized = unicodedata.normalize("NFKD", password)
    kept = "".join(ch for ch in normalized if not (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F))
    return kept.encode("utf-8")


def derive_decryption_key(password: str, kdf: KdfParams) -> bytes:
    """The KDF step (the slow part: scrypt n=2**18 takes about a second); within the limits only."""
    check_kdf_limits(kdf)
    pw = normalize_password(password)
    if kdf.function == "scrypt":
        maxmem = scrypt_memory(kdf.n, kdf.r, kdf.p) + 1024 * 1024
        return hashlib.scrypt(pw, salt=kdf.salt, n=kdf.n, r=kdf.r, p=kdf.p, maxmem=maxmem, dklen=kdf.dklen)
    return hashlib.pbkdf2_hmac("sha256", pw, kdf.salt, kdf.c, dklen=kdf.dklen)


def _aes_128_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    ctx = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return ctx.update(data) + ctx.finalize()


def _checksum(decryption_key: bytes, ciphertext: bytes) -> bytes:
    return hashlib.sha256(decryption_key[16:32] + ciphertext).digest()


def decrypt_keystore(keystore: Keystore, password: str, *, source: str = "keystore") -> bytes:
    """The secret inside ``keystore``. Raises WrongPassword if the checksum does not match."""
    decryption_key = derive_decryption_key(password, keystore.kdf)
    if not hmac.compare_digest(_checksum(decryption_key, keystore.ciphertext), keystore.checksum):
        raise WrongPassword(f"{source}: checksum mismatch (wrong password or corrupted keystore)")
    return _aes_128_ctr(decryption_key[:16], keystore.iv, keystore.ciphertext)


def default_kdf(function: Literal["scrypt", "pbkdf2"] = "scrypt", salt: bytes | None = None) -> KdfParams:
    """The parameters staking-deposit-cli writes (scrypt n=2**18, r=8, p=1; pbkdf2 c=2**18)."""
    salt = os.urandom(32) if salt is None else salt
    if function == "scrypt":
        return KdfParams("scrypt", salt, 32, n=2**18, r=8, p=1)
    return KdfParams("pbkdf2", salt, 32, c=2**18)


def encrypt_keystore(
    secret: bytes,
    password: str,
    *,
    kdf: KdfParams | None = None,
    iv: bytes | None = None,
    pubkey: bytes | None = None,
    path: str = "",
    description: str = "",
    keystore_uuid: str | None = None,
) -> dict[str, Any]:
    """An EIP-2335 keystore (as a JSON-ready dict) holding ``secret`` under ``password``.

    ``kdf`` and ``iv`` default to fresh random values; pass them to reproduce a known keystore.
    """
    kdf = default_kdf() if kdf is None else kdf
    iv = os.urandom(16) if iv is None else iv
    if len(iv) != 16:
        raise MalformedKeystore(f"aes-128-ctr iv must be 16 bytes, got {len(iv)}")
    decryption_key = derive_decryption_key(password, kdf)
    ciphertext = _aes_128_ctr(decryption_key[:16], iv, secret)
    kdf_params: dict[str, Any]
    if kdf.function == "scrypt":
        kdf_params = {"dklen": kdf.dklen, "n": kdf.n, "r": kdf.r, "p": kdf.p, "salt": kdf.salt.hex()}
    else:
        kdf_params = {"dklen": kdf.dklen, "c": kdf.c, "prf": "hmac-sha256", "salt": kdf.salt.hex()}
    body: dict[str, Any] = {
        "crypto": {
            "kdf": {"function": kdf.function, "params": kdf_params, "message": ""},
            "checksum": {
                "function": "sha256",
                "params": {},
                "message": _checksum(decryption_key, ciphertext).hex(),
            },
            "cipher": {"function": "aes-128-ctr", "params": {"iv": iv.hex()}, "message": ciphertext.hex()},
        },
        "description": description,
        "pubkey": pubkey.hex() if pubkey is not None else "",
        "path": path,
        "uuid": keystore_uuid or str(uuid.uuid4()),
        "version": 4,
    }
    return body
