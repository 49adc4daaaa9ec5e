"""The REST front end: app factory, endpoints, middleware and wire codecs."""

from custom_server.rest.app import create_app

__all__ = ["create_app"]
