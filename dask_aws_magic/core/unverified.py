"""Acting on unverified resources: those that carry a cluster's tags but that no proof ties to a
cluster (see :mod:`..backends.proof`). Nothing ever acts on them on its own; this removes exactly the
ones the user names, one by one, with a warning."""

from __future__ import annotations

from ..backends import Unverified, get_backend
from .errors import DaskAwsMagicError


def remove(ids: list[str]) -> list[str]:
    """Remove the unverified resources ``ids`` (as ``list`` shows them); one line per thing removed,
    the first a warning."""
    from . import inventory

    wanted = list(dict.fromkeys(ids))
    if not wanted:
        raise DaskAwsMagicError("Name the unverified resources to remove by their ids, as `list` shows them: "
                                "`down --unverified i-0123456789abcdef0 sg-0123456789abcdef0`.")
    found = inventory.survey("*")
    owners: dict[str, Unverified] = {i: entry for entry in found.unverified for i in entry.resources}
    unknown = [i for i in wanted if i not in owners]
    if unknown:
        shown = ", ".join(i for entry in found.unverified for i in entry.resources) or "none"
        raise DaskAwsMagicError(
            f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not among the unverified resources "
            f"(those `list` shows: {shown}). Nothing was removed. A cluster's proven resources go with "
            "`down NAME`.")
    lines = [f"warning: removing {', '.join(wanted)}: nothing proves they belong to a cluster of yours; they "
             "carry dask-aws-magic tags, which anyone allowed to tag could have written"]
    # Instances first: a security group cannot go while an instance still uses it.
    for resource in sorted(wanted, key=lambda i: not i.startswith("i-")):
        entry = owners[resource]
        remover = getattr(get_backend(entry.backend), "remove_unverified", None)
        if remover is None:
            raise DaskAwsMagicError(f"The {entry.backend} backend cannot remove unverified resources; remove "
                                    f"{resource} in the AWS console.")
        lines += remover(entry, [resource])
    return lines
