"""Per-cluster TLS material: a CA of the cluster's own that signs one certificate for the scheduler,
one for the workers and one for the client, then is forgotten.

The CA's key exists only in memory while ``new_cluster_material`` runs, on the machine that runs
``up``: nobody can issue another identity for the cluster afterwards. Every certificate is ECDSA
P-256, so the whole material stays a few KB. Dask checks that a peer's certificate was signed by the
cluster's CA (mutual TLS); hostnames are not checked, so the certificates name no address.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

ROLES = ("scheduler", "worker", "client")


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key, PEM text."""

    cert: str
    key: str


@dataclass(frozen=True)
class ClusterMaterial:
    """The cluster CA's certificate and the three identities it signed."""

    ca: str
    scheduler: CertKey
    worker: CertKey
    client: CertKey

    def node_secret(self, env: dict[str, str] | None = None,
                    roles: tuple[str, ...] = ("scheduler", "worker")) -> dict[str, str]:
        """What the nodes of ``roles`` fetch at boot: their own identities only, never the client's."""
        secret = {"ca": self.ca, "env": json.dumps(env or {})}
        for role in roles:
            pair = getattr(self, role)
            secret[f"{role}_cert"], secret[f"{role}_key"] = pair.cert, pair.key
        return secret

    def client_secret(self) -> dict[str, str]:
        """What ``attach`` from another machine needs: the CA certificate and the client's identity."""
        return {"ca": self.ca, "cert": self.client.cert, "key": self.client.key}


def client_security(ca: str, cert: str, key: str) -> Any:
    """A ``distributed.Security`` for a client of the cluster (dask's global config untouched)."""
    from ..imports import distributed

    return distributed().Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def new_cluster_material(name: str, days: int = 365) -> ClusterMaterial:
    """A fresh CA for cluster ``name`` and the scheduler's, the workers' and the client's certificates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def subject(what: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"dask-aws-magic {name} {what}")])

    def builder(what: str, public_key: Any, issuer: x509.Name) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject(what)).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days)))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = subject("CA")
    ca_cert = (builder("CA", ca_key.public_key(), ca_name)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    # Every Dask process is both a TLS server and a TLS client (workers connect to each other).
    usages = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    issued = {}
    for role in ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (builder(role, key.public_key(), ca_name)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(usages, critical=False)
                .sign(ca_key, hashes.SHA256()))
        issued[role] = CertKey(cert=_pem(cert), key=_key_pem(key))
    return ClusterMaterial(ca=_pem(ca_cert), **issued)


def _pem(cert: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
