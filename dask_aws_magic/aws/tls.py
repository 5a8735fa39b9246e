"""Per-cluster TLS material and the network range allowed to reach a cluster."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

from ..core.errors import LaunchError

CHECKIP_URL = "https://checkip.amazonaws.com"
IMDS_ADDRESS = "169.254.169.254"  # link-local, so on EC2 the route to it leaves by the VPC interface


@dataclass
class ClusterTLS:
    """One self-signed ECDSA certificate, its own CA, shared by the scheduler, workers and client.

    ECDSA P-256 keeps the PEM text under 1 KB, so user-data stays far below EC2's 16 KB limit.
    """

    cert: str
    key: str

    def security(self):
        """A ``distributed.Security`` for a client of this cluster (the global dask config untouched)."""
        from distributed import Security

        return Security(tls_ca_file=self.cert, tls_client_cert=self.cert, tls_client_key=self.key,
                        require_encryption=True)


def new_cluster_tls(name: str, days: int = 365) -> ClusterTLS:
    """Generate the certificate for cluster ``name``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"dask-aws-magic {name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return ClusterTLS(
        cert=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
    )


def check_cidr(cidr: str) -> str:
    """``cidr`` normalised, or a :class:`LaunchError` naming ``network.ingress_cidr``."""
    try:
        return str(ipaddress.ip_network(cidr, strict=False))
    except ValueError:
        raise LaunchError(
            f"`network.ingress_cidr` is {cidr!r}, which is not an IPv4 network; write it like 203.0.113.7/32."
        ) from None


def _local_address_towards(host: str) -> str:
    """This machine's address on the route to ``host`` (a UDP connect sends no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((socket.gethostbyname(host), 9))
        return probe.getsockname()[0]


def caller_cidr(endpoint_url: str | None = None, timeout: float = 3.0, private: bool = False) -> str:
    """The /32 of the address this machine reaches the cluster from.

    With a custom endpoint (``AWS_ENDPOINT_URL``: a VPC endpoint, a proxy, the sandbox) or with
    ``private`` (a notebook inside the VPC), it is this machine's own address on the route there,
    found without sending traffic. Otherwise it is the public address AWS sees, asked of
    checkip.amazonaws.com.
    """
    endpoint_url = endpoint_url if endpoint_url is not None else os.environ.get("AWS_ENDPOINT_URL")
    try:
        if endpoint_url:
            return f"{_local_address_towards(urlparse(endpoint_url).hostname or '127.0.0.1')}/32"
        if private:
            return f"{_local_address_towards(IMDS_ADDRESS)}/32"
    except OSError as exc:
        raise LaunchError(
            f"Could not find this machine's address to open the scheduler to it ({exc}). "
            "Set `network.ingress_cidr` in the profile (e.g. `--set network.ingress_cidr=10.0.0.0/16`)."
        ) from None
    try:
        with urllib.request.urlopen(CHECKIP_URL, timeout=timeout) as reply:  # noqa: S310 (fixed https URL)
            address = reply.read().decode().strip()
        ipaddress.ip_address(address)
    except (OSError, ValueError) as exc:
        raise LaunchError(
            f"Could not find this machine's public address to open the scheduler to it ({exc}). "
            "Set `network.ingress_cidr` in the profile (e.g. `--set network.ingress_cidr=203.0.113.7/32`)."
        ) from None
    return f"{address}/32"
