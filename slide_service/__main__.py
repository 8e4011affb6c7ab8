"""`python -m slide_service`: serve the slide service on its configured host and port."""

from common.server import serve
from slide_service.settings import get_settings

serve("slide_service.main:create_app", "slides", get_settings())
