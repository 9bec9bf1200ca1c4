"""One error type for the whole shop, turned into a JSON answer with a clear message."""

from __future__ import annotations


class ShopError(Exception):
    """A failure with an HTTP status and a message meant for the caller."""

    def __init__(self, status: int, message: str, **details: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def to_json(self) -> dict:
        return {"error": self.message, **self.details}
