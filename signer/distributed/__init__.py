"""Distributed (threshold) accounts: the key generation between signers (dkg.py). Pure: no I/O."""
