"""Client errors raised by model code, turned into 4xx responses by Truss's server.

Truss's server (templates/server/_truss_common/errors.py) passes a `fastapi.HTTPException`
raised from `predict` through with its status code and detail, so model code raises
`InputError` (a plain ValueError, testable without FastAPI) and the Truss's model.py
wraps calls with `client_errors()`.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from fastapi import HTTPException


class InputError(ValueError):
    """The request is wrong; `field` names the offending field when there is one."""

    def __init__(self, message: str, field: Optional[str] = None, status_code: int = 400):
        self.message = message
        self.field = field
        self.status_code = status_code
        super().__init__(f"{field}: {message}" if field else message)

    def to_http(self) -> HTTPException:
        detail = {"error": self.message}
        if self.field:
            detail["field"] = self.field
        return HTTPException(status_code=self.status_code, detail=detail)


@contextlib.contextmanager
def client_errors() -> Iterator[None]:
    """Re-raise InputError as the HTTPException Truss's server turns into a 4xx."""
    try:
        yield
    except InputError as exc:
        raise exc.to_http() from exc
