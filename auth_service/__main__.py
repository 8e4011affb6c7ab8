"""`python -m auth_service`: serve the auth service on its configured host and port."""

from auth_service.settings import get_settings
from common.server import serve

serve("auth_service.main:create_app", "auth", get_settings())
