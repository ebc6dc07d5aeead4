"""The Python client SDK of edgeim."""
from .client import Client, Disconnected, ServerError

__all__ = ["Client", "Disconnected", "ServerError"]
