"""Gateway: the only public API (`/api/v1/...`), in front of the auth, inference and data
services."""
