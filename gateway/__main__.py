"""`python -m gateway`: serve the gateway service on its configured host and port."""

from common.server import serve
from gateway.settings import get_settings

serve("gateway.main:create_app", "gateway", get_settings())
