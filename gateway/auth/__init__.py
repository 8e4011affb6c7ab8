"""Logging in, tokens and user administration: the auth service's public routes; and
the refusal of access tokens whose sessions have ended (`sessions`)."""
