"""Bearer-token authentication: who is calling, for which clinic, with which scopes."""
