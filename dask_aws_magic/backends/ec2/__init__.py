"""The ``ec2`` backend: plain EC2 instances for the scheduler and the workers."""

from .backend import EC2Backend

__all__ = ["EC2Backend"]
