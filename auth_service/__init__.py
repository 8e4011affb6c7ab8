"""Auth service: users, roles, password hashes and signed tokens; database `auth`."""
