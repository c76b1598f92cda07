"""Key modules: HSM semantics (handles, public keys, sign; never export)."""
