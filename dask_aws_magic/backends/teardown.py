"""Removing a cluster's things one kind at a time, saying exactly what was removed and what is left.

A step that fails (AWS refusing, throttling past the retries) does not stop the others: the secrets
still go when the role cannot, and the message names both. A step that needs an earlier one (the
security group needs the instances gone) is not tried when that one failed, and is named as left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..aws.session import aws
from ..core.errors import DaskAwsMagicError, TeardownIncomplete


class Teardown:
    """The steps of one cluster's removal, as they go (``where``: its region and credentials, for messages)."""

    def __init__(self, cluster: str, where: str) -> None:
        self.cluster, self.where = cluster, where
        self.removed: list[str] = []  # one line per kind of thing removed
        self.left: list[str] = []  # one line per thing left, with why
        self._failed: set[str] = set()

    def step(self, what: str, remove: Callable[[], Iterable[str] | str | None], *,
             after: Iterable[str] = ()) -> bool:
        """Run ``remove`` (it returns the lines of what it removed, or nothing when nothing was there; AWS's
        errors explained); ``what`` names what is left if it fails. Not run when a step it comes ``after``
        failed."""
        blocked = [name for name in after if name in self._failed]
        if blocked:
            self._failed.add(what)
            self.left.append(f"{what} (not tried: the {' and '.join(blocked)} could not be removed first)")
            return False
        try:
            with aws(f"removing the {what} of {self.cluster} in {self.where}"):
                lines = remove()
        except DaskAwsMagicError as exc:
            self._failed.add(what)
            self.left.append(f"{what} ({exc})")
            return False
        self.removed += [lines] if isinstance(lines, str) else list(lines or [])
        return True

    def finish(self, nothing: str = "nothing left on AWS") -> list[str]:
        """The lines of what was removed; :class:`TeardownIncomplete` naming both lists if anything is left."""
        if self.left:
            raise TeardownIncomplete(self.cluster, self.removed, self.left)
        return self.removed or [nothing]
