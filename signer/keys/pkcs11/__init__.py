"""The PKCS#11 key module (tested against SoftHSM2); this package alone imports ``pkcs11``.

Cut at its seams, each module below the next:

* ``cryptoki``: the library, loaded once per process and re-initialised with OS locking (ctypes),
  raw C_Login/C_Logout, and the translation of every pkcs11 exception into ``signer.errors``;
* ``logins``: the process-wide login registry (one login per token, PIN checks);
* ``sessions``: the pool of signing sessions and their private-key objects;
* ``objects`` (secp256k1/ed25519 key pairs in the token) and ``sealed`` (BLS secrets sealed by a
  token AES key, in ``<data_dir>/pkcs11-bls-sealed.json``);
* ``module``: ``Pkcs11KeyModule``, the KeyModule built on them.
"""

from signer.keys.pkcs11.module import Pkcs11KeyModule
from signer.keys.pkcs11.sealed import SEALED_FILE_NAME

__all__ = ["SEALED_FILE_NAME", "Pkcs11KeyModule"]
