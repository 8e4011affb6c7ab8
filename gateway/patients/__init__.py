"""Pseudonymised patients: a hospital reference, never a name."""
