"""Per-cluster TLS material: one certificate shared by the scheduler, the workers and the client."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any


@dataclass
class ClusterTLS:
    """One self-signed ECDSA certificate, its own CA, shared by the scheduler, workers and client.

    ECDSA P-256 keeps the PEM text under 1 KB, so user-data stays far below EC2's 16 KB limit.
    """

    cert: str
    key: str

    def security(self) -> Any:
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
