"""An EC2 instance-metadata service (IMDSv2) for emulated instances.

Each instance sees its own tree under `http://127.0.0.1:PORT/<instance-id>/`.
"""

from __future__ import annotations

import functools
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Tree = dict[str, Any]
# Returns the metadata tree and user-data of an instance, or None if unknown.
Resolver = Callable[[str], "tuple[Tree, bytes | None] | None"]

_MAX_TTL = 21600


def instance_tree(instance: Any, extra: Tree | None = None) -> Tree:
    """The `latest/` tree for a moto Instance: meta-data/ and dynamic/ entries."""
    backend = instance.ec2_backend
    zone = instance._placement.zone
    region = instance.region_name
    private_ip = instance.private_ip or ""
    tags = dict(backend.tags.get(instance.id, {}))
    nic = instance.nics.get(0)
    meta: Tree = {
        "ami-id": instance.image_id,
        "ami-launch-index": str(instance.ami_launch_index),
        "hostname": instance.private_dns_name,
        "local-hostname": instance.private_dns_name,
        "local-ipv4": private_ip,
        "instance-id": instance.id,
        "instance-type": instance.instance_type,
        "instance-life-cycle": "spot" if instance.lifecycle == "spot" else "on-demand",
        "mac": nic.mac_address if nic else "",
        "placement": {"availability-zone": zone, "region": region},
        "security-groups": "\n".join(g.name for g in instance.security_groups),
        "tags": {"instance": tags},
    }
    if instance.public_ip:
        meta["public-ipv4"] = instance.public_ip
        meta["public-hostname"] = instance.public_dns_name
    role = _role(instance)
    if role is not None:
        credentials = functools.partial(_credentials, instance, role.arn)  # issued when asked for
        meta["iam"] = {"security-credentials": {role.name: credentials}}
    if extra:
        meta.update(extra)
    document = {
        "accountId": instance.owner_id,
        "architecture": instance.architecture,
        "availabilityZone": zone,
        "billingProducts": None,
        "devpayProductCodes": None,
        "marketplaceProductCodes": None,
        "imageId": instance.image_id,
        "instanceId": instance.id,
        "instanceType": instance.instance_type,
        "kernelId": None,
        "pendingTime": _iso(instance.launch_time),
        "privateIp": private_ip,
        "ramdiskId": None,
        "region": region,
        "version": "2017-09-30",
    }
    return {"meta-data": meta, "dynamic": {"instance-identity": {"document": json.dumps(document, indent=2)}}}


def _iso(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, datetime) else str(value)


def _role(instance: Any) -> Any:
    """The IAM role of the instance's profile, None without one."""
    association = instance.ec2_backend.iam_instance_profile_associations.get(instance.id)
    profile = getattr(association, "iam_instance_profile", None)
    roles = getattr(profile, "roles", None) or []
    return roles[0] if roles else None


def _credentials(instance: Any, role_arn: str) -> str:
    """Temporary credentials of the instance's role, as STS issues them: with IAM enforcement on
    (``Sandbox.enforce_iam``) the instance can do exactly what its role allows."""
    return role_credentials(instance.owner_id, instance.region_name, role_arn, instance.id)


def role_credentials(account_id: str, region: str, role_arn: str, session_name: str) -> str:
    """A role's temporary credentials as the metadata services serve them (JSON), issued by STS."""
    from moto.sts.models import sts_backends

    assumed = sts_backends[account_id]["aws"].assume_role(
        region_name=region, role_session_name=session_name, role_arn=role_arn, policy="",
        duration=6 * 3600, external_id="")
    now = datetime.now(timezone.utc)
    return json.dumps(
        {
            "Code": "Success",
            "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Type": "AWS-HMAC",
            "AccessKeyId": assumed.access_key_id,
            "SecretAccessKey": assumed.secret_access_key,
            "Token": assumed.session_token,
            "Expiration": assumed.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),  # STS's (the sandbox may shorten it)
        }
    )


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # an instance killed mid-request
            super().handle_error(request, client_address)


class MetadataServer:
    """Threaded HTTP server answering IMDSv2 requests for every emulated instance."""

    def __init__(self, resolve: Resolver, host: str = "127.0.0.1") -> None:
        self.resolve = resolve
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._httpd = _Server((host, 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-imds", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def endpoint_for(self, instance_id: str) -> str:
        return f"{self.url}{instance_id}/"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def issue_token(self, instance_id: str, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (instance_id, time.monotonic() + ttl)
        return token

    def check_token(self, instance_id: str, token: str | None) -> bool:
        with self._lock:
            entry = self._tokens.get(token or "")
        return entry is not None and entry[0] == instance_id and entry[1] > time.monotonic()


def _lookup(tree: Tree, parts: list[str]) -> str | None:
    node: Any = tree
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict):
        return "\n".join(f"{k}/" if isinstance(v, dict) else k for k, v in node.items())
    return str(node() if callable(node) else node)


def _handler_for(server: MetadataServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "EC2ws"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes | str = b"", content_type: str = "text/plain") -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _split(self) -> tuple[str, list[str]]:
            path = self.path.split("?", 1)[0]
            instance_id, _, rest = path.lstrip("/").partition("/")
            return instance_id, [p for p in rest.split("/") if p]

        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            instance_id, parts = self._split()
            if parts != ["latest", "api", "token"] or server.resolve(instance_id) is None:
                self._reply(404, "Not Found")
                return
            try:
                ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
            except ValueError:
                ttl = 0
            if not 1 <= ttl <= _MAX_TTL:
                self._reply(400, "Bad Request")
                return
            token = server.issue_token(instance_id, ttl)
            self.send_response(200)
            self.send_header("X-aws-ec2-metadata-token-ttl-seconds", str(ttl))
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(token)))
            self.end_headers()
            self.wfile.write(token.encode())

        def do_GET(self) -> None:
            instance_id, parts = self._split()
            found = server.resolve(instance_id)
            if found is None:
                self._reply(404, "Not Found")
                return
            if not server.check_token(instance_id, self.headers.get("X-aws-ec2-metadata-token")):
                self._reply(401, "Unauthorized")
                return
            tree, user_data = found
            if parts[:1] != ["latest"]:
                self._reply(404, "Not Found")
                return
            if parts[1:] == ["user-data"]:
                if user_data is None:
                    self._reply(404, "Not Found")
                else:
                    self._reply(200, user_data, "application/octet-stream")
                return
            value = _lookup(tree, parts[1:])
            if value is None:
                self._reply(404, "Not Found")
            else:
                ctype = "application/json" if parts[-1] == "document" else "text/plain"
                self._reply(200, value, ctype)

    return Handler
