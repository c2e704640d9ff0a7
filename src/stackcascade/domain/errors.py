"""Errors the core raises; adapters map them to HTTP status codes.

Each carries a message written for the person who has to fix the input.
"""

from __future__ import annotations


class CascadeError(Exception):
    """Base of every error that is the caller's to fix."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(CascadeError):
    status_code = 400


class Unauthenticated(CascadeError):
    status_code = 401


class Forbidden(CascadeError):
    status_code = 403


class NotFound(CascadeError):
    status_code = 404


class Conflict(CascadeError):
    status_code = 409


class PreconditionFailed(CascadeError):
    """An ``If-Match`` that no longer matches: what the caller saw has changed since."""

    status_code = 412


class PayloadTooLarge(CascadeError):
    status_code = 413
