"""The Python client SDK of edgeim."""
from .client import Client, Disconnected, FileTransferError, ServerError

__all__ = ["Client", "Disconnected", "FileTransferError", "ServerError"]
