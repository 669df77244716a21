"""The simulated OATH hardware token (pure device model, no I/O)."""
