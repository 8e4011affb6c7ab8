"""Logging in, tokens and user administration: the auth service's public routes."""
