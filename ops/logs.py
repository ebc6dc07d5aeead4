"""JSON logs: one object per line on stderr, with the extra fields passed to the logger."""
from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["setup_logging", "set_level", "JsonFormatter"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # picows logs every refused handshake at info; keep it to warnings
    logging.getLogger("picows").setLevel(max(logging.WARNING, root.level))


def set_level(level: str) -> None:
    """Change the level of a running node's logs (SIGHUP)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    logging.getLogger("picows").setLevel(max(logging.WARNING, root.level))
