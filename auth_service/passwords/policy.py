"""What makes a password acceptable: long enough, not the email, not a common password."""

from functools import lru_cache
from pathlib import Path

MIN_LENGTH = 12
MAX_LENGTH = 256  # Argon2 takes any length; this bounds the work one request can cause
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")


class WeakPassword(ValueError):
    """The password breaks a rule; the message names the rule."""


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line and not line.startswith("#"))


def check_password(password: str, email: str) -> None:
    """Raise `WeakPassword` naming the first rule `password` breaks."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"The password must be at least {MIN_LENGTH} characters long.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"The password must be at most {MAX_LENGTH} characters long.")
    if password.strip().lower() == email.strip().lower():
        raise WeakPassword("The password must not be the email address.")
    if password.lower() in common_passwords():
        raise WeakPassword("The password is one of the most commonly used passwords.")
