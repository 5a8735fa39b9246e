"""The base of every handler: authenticated JSON, core errors turned into 400/404 answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from tornado.web import HTTPError

from ..core.errors import ClusterNotFound, DaskAwsMagicError
from . import bodies
from .operations import STORE, OperationStore
from .survey import SURVEY

T = TypeVar("T")


class BaseHandler(APIHandler):
    """JSON in and out; the core runs in a worker thread (it may wait on AWS or a scheduler)."""

    store: OperationStore = STORE

    def body(self) -> dict[str, Any]:
        return bodies.parse(self.request.body)

    async def core(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a (blocking) core function off the event loop; its errors become HTTP answers."""
        try:
            return await asyncio.get_running_loop().run_in_executor(None, lambda: function(*args, **kwargs))
        except ClusterNotFound as exc:
            self.fail(404, str(exc))
        except DaskAwsMagicError as exc:
            self.fail(400, str(exc))
        raise AssertionError("unreachable")

    def fail(self, code: int, message: str) -> None:
        raise _Answer(code, message)

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def accepted(self, operation: Any) -> None:
        """Answer 202 with the operation just started and the URL that follows it."""
        SURVEY.forget()
        url = f"{self.base_url.rstrip('/')}/dask-aws-magic/operations/{operation.id}"
        self.set_header("Location", url)
        self.reply({"operation": operation.to_json(), "cluster": operation.cluster, "follow": url}, 202)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as ``{"message": ...}``: the core's paragraph, or what the field check said."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "message", None) or getattr(exc, "log_message", None) or self._reason
        if not getattr(exc, "message", None) and isinstance(exc, HTTPError) and exc.args == ():
            message = message.replace("%%", "%")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "status": status_code}))


class _Answer(bodies.HTTPError):
    def __init__(self, code: int, message: str):
        super().__init__(code, log_message=message.replace("%", "%%"))
        self.message = message
