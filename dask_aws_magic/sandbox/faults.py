"""Injected AWS errors: which requests fail, and the error bodies AWS would send."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from .awsrequest import AwsRequest


@dataclass
class Fault:
    """Fail the next `remaining` requests of `action` whose params include `match`.

    `remaining=None` fails every matching request until the fault is cleared.
    """

    action: str
    code: str
    message: str = ""
    remaining: int | None = 1
    match: dict[str, Any] = field(default_factory=dict)
    status: int = 400

    def matches(self, request: AwsRequest) -> bool:
        if request.key != self.action or self.remaining == 0:
            return False
        return all(request.params.get(k) == _as_param(v) for k, v in self.match.items())


def _as_param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class FaultRegistry:
    """Thread-safe list of faults, consumed in the order they were injected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, request: AwsRequest) -> Fault | None:
        """Return (and count down) the first fault that applies to `request`."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(request):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
        return None


def error_response(fault: Fault, request: AwsRequest) -> tuple[int, list[tuple[str, str]], bytes]:
    """The status, headers and body AWS sends for this error in the request's protocol."""
    request_id = str(uuid.uuid4())
    code, message = escape(fault.code), escape(fault.message)
    if request.protocol == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
        content_type = "text/xml;charset=UTF-8"
    elif request.protocol == "query":
        kind = "Sender" if fault.status < 500 else "Receiver"
        body = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        content_type = "text/xml"
    elif request.protocol in ("json", "rest-json"):
        body = json.dumps({"__type": fault.code, "message": fault.message})
        content_type = "application/x-amz-json-1.1"
    else:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
        )
        content_type = "application/xml"
    data = body.encode()
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(data))),
        ("x-amzn-RequestId", request_id),
        ("x-amzn-ErrorType", fault.code),
    ]
    return fault.status, headers, data
