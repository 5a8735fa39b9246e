"""The ``ec2`` backend: plain EC2 instances for the scheduler and the workers.

``backend`` (the interface), ``planning`` (sizes, prices, settings), ``lookups`` (what planning
asks AWS, in parallel), ``placement`` (subnets and zones), ``instances`` (launch, describe,
terminate), ``model`` (what was created), ``userdata`` (how Dask reaches an instance),
``discovery`` (clusters found by their tags, in every scope in use).
"""

from .backend import EC2Backend

__all__ = ["EC2Backend"]
