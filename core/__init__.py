"""The platform's shared core: storage and migrations, tenants and keys, auth, validation and
error bodies, OpenAPI, limits, metrics, the client address, CSV. It imports nothing of
analytics, edge or retention, which all build on it."""
