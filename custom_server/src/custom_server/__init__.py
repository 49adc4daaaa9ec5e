"""The creativeflow.ai_serving model server."""

__version__ = "0.1.0"
