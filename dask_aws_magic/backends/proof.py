"""What proves that tagged AWS resources belong to a cluster: a record made on this machine (its owner's
home, 0600) for what it lists, else the cluster's manifest (:mod:`..aws.manifest`), read with the
caller's credentials.

Manifests are kept for the life of the process: only a cluster's owner can change its manifest, and
it only grows, so a kept copy proves a subset of what a fresh one proves. A resource the kept copy
does not prove makes discovery read the manifest again (once per discovery).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..aws import manifest as manifests
from ..aws.manifest import Manifest, Unproven
from ..aws.scopes import LIST_ATTEMPTS
from ..aws.session import environment
from ..core.naming import is_cluster_id
from ..core.registry import RECOVERED

if TYPE_CHECKING:
    from ..aws.scopes import Scope
    from ..core.registry import ClusterRecord

_kept: dict[tuple[Any, str], Manifest] = {}
_lock = threading.Lock()


def made_here(record: ClusterRecord) -> bool:
    """True for a record ``up`` wrote on this machine: it proves the resources it lists (a record rebuilt
    from discovery proves nothing by itself)."""
    return record.profile != RECOVERED


def forget() -> None:
    """Drop the kept manifests (tests, benchmarks)."""
    with _lock:
        _kept.clear()


class Proofs:
    """The proofs available in one scope, during one discovery."""

    def __init__(self, scope: Scope, backend: str) -> None:
        from ..core import registry

        self.scope = scope
        records, _ = registry.scan()
        self.records = {r.cluster_id: r for r in records if r.backend == backend and made_here(r)}
        self._fresh: set[str] = set()
        self._sm: Any = None

    def record(self, cluster_id: str) -> ClusterRecord | None:
        return self.records.get(cluster_id)

    def manifest(self, cluster_id: str, proves: Callable[[Manifest], bool] = lambda m: True) -> Manifest:
        """The manifest of ``cluster_id``, read again once when the kept one does not satisfy ``proves``;
        :class:`Unproven` with the reason when there is none to read."""
        if not is_cluster_id(cluster_id):
            raise Unproven(f"it is tagged with the cluster id {cluster_id!r}, which this tool never makes")
        key = (self.scope, environment(), cluster_id)  # what one identity proved is not another's to reuse
        with _lock:
            kept = _kept.get(key)
        if kept is not None and (proves(kept) or cluster_id in self._fresh):
            return kept
        if self._sm is None:
            self._sm = self.scope.client("secretsmanager", attempts=LIST_ATTEMPTS)  # a listing: reports, never hangs
        stored = manifests.read(self._sm, cluster_id)
        self._fresh.add(cluster_id)
        if stored.manifest is None:
            raise Unproven(f"its client secret {manifests.secret_name(cluster_id)} holds no manifest (a cluster "
                           "made by a version before manifests: stop it from the machine that made it)")
        with _lock:
            _kept[key] = stored.manifest
        return stored.manifest

    def covering(self, cluster_id: str, backend: str, proves: Callable[[Manifest], bool],
                 unlisted: str) -> tuple[Manifest | None, str]:
        """The manifest of ``cluster_id`` if it is of ``backend``, and why what it does not list is
        unproven (``unlisted`` says what those resources are); None and why when there is no such manifest."""
        try:
            manifest = self.manifest(cluster_id, proves)
        except Unproven as exc:
            return None, reason(exc)
        if manifest.backend != backend:
            return None, f"the manifest of {cluster_id} is of the {manifest.backend} backend"
        return manifest, (f"the manifest of {manifest.cluster} ({cluster_id}) does not list them: someone put its "
                          f"tags on {unlisted}")


def read(scope: Scope, name: str, cluster_id: str) -> tuple[Manifest | None, str]:
    """The manifest of the cluster ``name`` (``cluster_id``), or None and why there is none to read."""
    from ..aws.session import aws

    try:
        with aws(f"reading the manifest of {name}"):
            stored = manifests.read(scope.client("secretsmanager"), cluster_id)
    except Unproven as exc:
        return None, str(exc)
    if stored.manifest is None:
        return None, "its client secret holds no manifest (it was made by an older version)"
    return stored.manifest, ""


def for_down(scope: Scope, record: ClusterRecord, where: str) -> tuple[Manifest | None, str]:
    """The manifest ``down`` goes by, or None (a record made here that lists what it made) and why there is
    none. Raises when nothing proves the cluster's resources are the caller's (nothing is removed then)."""
    from ..core.errors import AwsError

    proof, why = read(scope, f"{record.name} in {where}", record.cluster_id)
    if proof is None and not made_here(record):
        raise AwsError(f"Nothing of {record.name} ({record.cluster_id}) was removed: {why}, so nothing "
                       "proves its resources are yours. Remove them by their ids, knowingly, with "
                       "`down --unverified ID ...` (`list` shows them).")
    return proof, why


def reason(exc: Unproven) -> str:
    """The sentence saying why nothing of a cluster is proven."""
    return f"nothing proves these are a cluster you or anyone made with this tool: {exc}"
