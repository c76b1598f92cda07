"""validator-signer: a remote signer for Ethereum and CometBFT validators."""

__version__ = "0.1.0"
"""The version, written here only: pyproject.toml, the build_info metric and the admin Status read it."""
