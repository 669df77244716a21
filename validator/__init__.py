"""The server side: token store, registration, drift-tracking verification, and the check kernel."""
