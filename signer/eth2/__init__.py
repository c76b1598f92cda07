"""eth2 package."""
