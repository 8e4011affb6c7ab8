"""Whole-slide images through the gateway: streamed uploads, metadata and deep-zoom tiles."""
