"""Cryptographic primitives: BLS12-381 (blst / py_ecc), secp256k1 (coincurve), ed25519."""
