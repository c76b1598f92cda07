"""cometbft package."""
