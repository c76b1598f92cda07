"""The PIN policy of the emulated key module: how long a PIN must be, and which PINs are refused.

The emulated module's PIN is all that stands between a copied module file and every key in it (the
module file is sealed under a key derived from the PIN with scrypt), so it must be long and random,
like an HSM's. A PIN is refused when it is shorter than ``min_length`` characters (default 16, after
NFKD normalisation, as the module uses it) or when it is one of a small built-in list of common PINs
and passwords or a short pattern repeated ("1111...", "abcabc..."). The list is compared without
case, spaces, dots, dashes and underscores ("Correct-Horse Battery.Staple" is the famous example).
The published development PIN (``signer.keys.dev.DEV_PIN``) is on the list: a PIN everybody knows
protects nothing.

The policy applies when a module is created and when its PIN is changed (``WeakPin``, a
ConfigError, says which rule). A module opened with a PIN the policy would refuse (made before the
policy existed) still opens; the module logs a warning that names the rule. The development module
(``signer.keys.dev``) is exempt (``PUBLIC_KEYS_ONLY``): every key in it derives from a published seed,
so its PIN protects nothing either way. PKCS#11 tokens apply their own PIN rules.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from typing import Final

from signer.config import DEFAULT_MIN_PIN_LENGTH, MIN_PIN_LENGTH_FLOOR
from signer.errors import WeakPin

__all__ = [
    "COMMON_PINS",
    "DEFAULT_MIN_PIN_LENGTH",
    "DEFAULT_PIN_POLICY",
    "MIN_PIN_LENGTH_FLOOR",
    "PUBLIC_KEYS_ONLY",
    "PinPolicy",
    "generate_pin",
]

GENERATED_PIN_BYTES: Final = 24
"""A generated PIN: 24 random bytes, 32 URL-safe base64 characters (192 bits)."""
_PATTERN_UNIT_MAX: Final = 4
"""A PIN that is one unit of at most this many characters repeated is refused ("abab...")."""

_SEPARATORS: Final = str.maketrans("", "", " .-_\t")

COMMON_PINS: Final[frozenset[str]] = frozenset(
    {
        # The published development PIN (signer.keys.dev.DEV_PIN) and the project's name.
        "validatorsignerdevpin",
        "validatorsigner",
        "validatorsignerpin",
        # Long ones that pass a length check.
        "0123456789abcdef",
        "1234567890123456",
        "12345678901234567890",
        "1234567812345678",
        "abcdefghijklmnop",
        "abcdefghijklmnopqrstuvwxyz",
        "qwertyuiopasdfgh",
        "qwertyuiopasdfghjkl",
        "qwertyuiopasdfghjklzxcvbnm",
        "1qaz2wsx3edc4rfv",
        "passwordpassword",
        "password12345678",
        "password1234567890",
        "changemechangeme",
        "iloveyouiloveyou",
        "correcthorsebatterystaple",
        "thequickbrownfoxjumpsoverthelazydog",
        # Short ones, for configurations with a lower minimum.
        "12345678",
        "123456789",
        "1234567890",
        "87654321",
        "01234567",
        "password",
        "password1",
        "password123",
        "passw0rd",
        "p@ssw0rd",
        "qwertyui",
        "qwerty123",
        "qwertyuiop",
        "1q2w3e4r",
        "1qaz2wsx",
        "zaq12wsx",
        "abcdefgh",
        "abc12345",
        "iloveyou",
        "changeme",
        "letmein1",
        "admin123",
        "administrator",
        "welcome1",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "superman",
        "trustno1",
        "validator",
        "ethereum",
        "userpin1",
        "softhsm2",
    }
)
"""Common PINs and passwords, lower case, without spaces, dots, dashes and underscores."""


def _normalized(pin: str) -> str:
    return unicodedata.normalize("NFKD", pin)


def _canonical(pin: str) -> str:
    return _normalized(pin).casefold().translate(_SEPARATORS)


def _repeated_unit(text: str) -> bool:
    """True if ``text`` is one unit of at most _PATTERN_UNIT_MAX characters repeated (at least twice;
    the last repetition may be cut short: "abcabcab")."""
    for size in range(1, min(_PATTERN_UNIT_MAX, len(text) // 2) + 1):
        if (text[:size] * (len(text) // size + 1))[: len(text)] == text:
            return True
    return False


@dataclass(frozen=True, slots=True)
class PinPolicy:
    """What a new emulated-module PIN must satisfy (see the module docstring)."""

    min_length: int = DEFAULT_MIN_PIN_LENGTH
    refuse_common: bool = True

    def problem(self, pin: str) -> str | None:
        """Why ``pin`` is refused (names the rule, never the PIN), or None."""
        length = len(_normalized(pin))
        if length == 0:
            return "the PIN is empty"
        if length < self.min_length:
            return (
                f"the PIN has {length} characters; the PIN policy needs at least {self.min_length} "
                "(generate one: signer keys init --generate-pin FILE)"
            )
        if self.refuse_common:
            canonical = _canonical(pin)
            if canonical in COMMON_PINS:
                return "the PIN is on the list of common or published PINs; choose a random one"
            if _repeated_unit(canonical):
                return "the PIN is a short pattern repeated; choose a random one"
        return None

    def check(self, pin: str) -> None:
        """Raise WeakPin (saying which rule) unless ``pin`` satisfies the policy."""
        problem = self.problem(pin)
        if problem is not None:
            raise WeakPin(f"PIN refused: {problem}")


DEFAULT_PIN_POLICY: Final = PinPolicy()

PUBLIC_KEYS_ONLY: Final = PinPolicy(min_length=1, refuse_common=False)
"""For a module whose every key is public anyway (the development module, signer.keys.dev): any
non-empty PIN. Never for a module that holds real keys."""


def generate_pin() -> str:
    """A random PIN: GENERATED_PIN_BYTES bytes from the OS CSPRNG, URL-safe base64 (no padding)."""
    return secrets.token_urlsafe(GENERATED_PIN_BYTES)
