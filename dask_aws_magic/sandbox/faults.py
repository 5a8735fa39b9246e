"""Injected AWS misbehaviour: which requests fail (and the error bodies AWS would send), and
which are held a while before they are answered (a slow AWS)."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from xml.sax.saxutils import escape

from .awsrequest import AwsRequest


@dataclass
class Rule:
    """Applies to the next `remaining` requests of `action` whose params include `match` (and that
    were made in `region`, if given).

    `remaining=None` applies to every matching request until the rule is cleared.
    """

    action: str
    remaining: int | None = 1
    match: dict[str, Any] = field(default_factory=dict)
    region: str | None = None

    def matches(self, request: AwsRequest) -> bool:
        if request.key != self.action or self.remaining == 0:
            return False
        if self.region is not None and request.region != self.region:
            return False
        return all(request.params.get(k) == _as_param(v) for k, v in self.match.items())


@dataclass(kw_only=True)
class Fault(Rule):
    """Answer the request with an AWS error instead of serving it."""

    code: str
    message: str = ""
    status: int = 400


@dataclass(kw_only=True)
class Delay(Rule):
    """Hold the request `seconds` before serving it as usual."""

    seconds: float


def _as_param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


R = TypeVar("R", bound=Rule)


class Rules(Generic[R]):
    """Thread-safe list of rules, consumed in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[R] = []

    def add(self, rule: R) -> R:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, request: AwsRequest) -> R | None:
        """Return (and count down) the first rule that applies to `request`."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(request):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            self._rules.remove(rule)
                    return rule
        return None


class Delays(Rules[Delay]):
    """Delays, and the held requests: `release()` (clear, or the sandbox stopping) lets them all go."""

    def __init__(self) -> None:
        super().__init__()
        self._released = threading.Event()

    def hold(self, request: AwsRequest) -> None:
        """Wait as the first matching delay says (returns at once if none, or once released)."""
        delay = self.take(request)
        if delay is not None:
            self._released.wait(delay.seconds)

    def release(self) -> None:
        self.clear()
        self._released.set()
        self._released = threading.Event()


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
