"""`python -m inference_service`: serve the inference service on its configured host and port."""

from common.server import serve
from inference_service.settings import get_settings

serve("inference_service.main:create_app", "inference", get_settings())
