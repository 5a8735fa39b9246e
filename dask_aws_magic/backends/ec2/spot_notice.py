"""Worker preload on an EC2 Spot instance: at EC2's two-minute interruption notice (the instance
metadata's ``spot/instance-action``), the worker retires: the scheduler moves its data to the other
workers, then it closes, and leaves a mark (the file ``$DASK_AWS_MAGIC_SPOT_MARK`` names) so the
instance waits for EC2 to take it back instead of powering itself off (the cluster's keeper then
replaces it). Standard library and distributed only: the EC2 bootstrap copies this text onto the
instance.

Use: ``dask worker --preload PATH``; an on-demand instance (a Spot fallback) stops watching at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.error
import urllib.request

logger = logging.getLogger("dask_aws_magic.spot")
IMDS = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254/")
INTERVAL = 5.0  # seconds between two looks at the metadata (AWS suggests every 5 s)
MARK = "DASK_AWS_MAGIC_SPOT_MARK"  # names the file that makes the user-data script wait for EC2, not power off


def _metadata(path: str) -> str | None:
    """An instance metadata entry (IMDSv2), None when it does not exist (or the service does not answer)."""
    try:
        ask = urllib.request.Request(IMDS + "latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        with urllib.request.urlopen(ask, timeout=2) as reply:
            token = reply.read().decode()
        read = urllib.request.Request(IMDS + "latest/meta-data/" + path, headers={"X-aws-ec2-metadata-token": token})
        with urllib.request.urlopen(read, timeout=2) as reply:
            return reply.read().decode()
    except (OSError, urllib.error.URLError):
        return None


async def _watch(worker) -> None:
    if await asyncio.to_thread(_metadata, "instance-life-cycle") != "spot":
        return
    while worker.status.name not in ("closing", "closing_gracefully", "closed", "failed"):
        notice = await asyncio.to_thread(_metadata, "spot/instance-action")
        if notice:
            logger.warning("EC2 reclaims this Spot instance (%s): retiring, the data moves to other workers", notice)
            if os.environ.get(MARK):
                with open(os.environ[MARK], "w") as mark:
                    mark.write(notice)
            await worker.close_gracefully(restart=False, reason="spot-interruption")
            return
        await asyncio.sleep(INTERVAL)


async def dask_setup(worker) -> None:
    worker._dask_aws_magic_spot = asyncio.get_running_loop().create_task(_watch(worker))  # kept: never collected
