"""validator-signer: a remote signer for Ethereum and CometBFT validators."""

__version__ = "0.1.0"
