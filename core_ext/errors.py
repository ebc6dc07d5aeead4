"""The one error hierarchy. Each class carries the ``ErrorCode`` that the edge puts in
the ERROR frame it answers with (edge/session.py is the one place that does the mapping)."""
from __future__ import annotations

from .protocol import ErrorCode

__all__ = [
    "ImError", "FrameError", "AuthError", "RequestError", "RateLimited", "Unavailable",
]


class ImError(Exception):
    """Base of every error a client may be told about."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str = "", code: ErrorCode | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])


class FrameError(ImError):
    """The frame cannot be parsed: raised by both codec implementations (1xxx codes)."""

    code = ErrorCode.BAD_FRAME


class AuthError(ImError):
    code = ErrorCode.NOT_AUTHENTICATED


class RequestError(ImError):
    """Well-formed request that is refused (3xxx codes)."""

    code = ErrorCode.INVALID_ARGUMENT


class RateLimited(ImError):
    code = ErrorCode.RATE_LIMITED


class Unavailable(ImError):
    code = ErrorCode.UNAVAILABLE
