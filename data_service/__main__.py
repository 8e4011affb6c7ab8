"""`python -m data_service`: serve the data service on its configured host and port."""

from common.server import serve
from data_service.settings import get_settings

serve("data_service.main:create_app", "data", get_settings())
