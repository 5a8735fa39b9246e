"""Errors a user can act on.

Every exception the core raises on purpose derives from :class:`DaskAwsMagicError`; its
message is one paragraph that names the field or argument and says what would fix it. The
faces show it as is (IPython ``UsageError``, a CLI message, a JSON error) with no traceback.
"""

from __future__ import annotations


class DaskAwsMagicError(Exception):
    """Base of every error meant for the user."""


class ProfileError(DaskAwsMagicError):
    """A profile could not be found, parsed or validated."""


class InvalidName(DaskAwsMagicError):
    """A cluster name that AWS tags or file names cannot hold."""


class ClusterNotFound(DaskAwsMagicError):
    """No cluster of that name exists in the registry or among tagged resources."""


class ForeignCluster(ClusterNotFound):
    """The cluster belongs to another owner, who was not named."""


class ClusterExists(DaskAwsMagicError):
    """A live cluster already has that name."""


class ClusterDead(DaskAwsMagicError):
    """The backend confirms nothing of the cluster runs any more."""


class ClusterUnreachable(DaskAwsMagicError):
    """The cluster's scheduler did not answer (it may be busy or frozen; its backend shows it runs)."""


class ClusterStarting(DaskAwsMagicError):
    """The cluster's ``up`` is still running: it cannot be used yet."""


class HomeNotWritable(DaskAwsMagicError):
    """The dask-aws-magic home directory cannot be created or written."""


class LaunchError(DaskAwsMagicError):
    """Starting the cluster failed; what was started has been torn down (or kept on request)."""


class WaitTimeout(LaunchError):
    """The scheduler did not answer in time."""


class Interrupted(LaunchError):
    """The user interrupted ``up`` (Ctrl-C)."""


class AwsError(DaskAwsMagicError):
    """An AWS call failed for a reason the user can fix (credentials, limits, permissions...)."""


class TeardownIncomplete(DaskAwsMagicError):
    """Some of a cluster's things were removed, some are left: ``removed`` and ``left`` name each."""

    def __init__(self, cluster: str, removed: list[str], left: list[str]) -> None:
        self.cluster, self.removed, self.left = cluster, list(removed), list(left)
        done = f"removed: {'; '.join(removed)}" if removed else "nothing was removed"
        super().__init__(f"{cluster}: {done}; left: {'; '.join(left)}")
