"""EC2 instances of a cluster: launching (spot in every allowed subnet, then on-demand), describing,
terminating (what the cluster's proof names), and reading what they printed or were given."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...aws.errors import error_code, explain
from ...aws.tags import cluster_filters, describe_all, tag_list
from ...core.errors import AwsError, LaunchError
from . import placement, userdata
from .model import EC2Resources
from .placement import Subnet

if TYPE_CHECKING:
    from ...core.registry import ClusterRecord

LIVE_STATES = ["pending", "running", "stopping", "stopped"]
DEAD_STATES = ("shutting-down", "terminated", "stopping", "stopped")
# Errors after which another market (spot -> on-demand) or another subnet may succeed.
SPOT_FALLBACK = {"InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded",
                 "InsufficientCapacity", "UnfulfillableCapacity"}
CAPACITY = {"InsufficientInstanceCapacity", "InsufficientCapacity", "Unsupported"}
TERMINATE_WAIT = 600.0
TERMINATE_POLL = 1.0  # seconds between two looks while instances shut down
INSTANCES = "Reservations[].Instances[]"


def describe(ec2: Any, cluster_id: str | None = None, states: list[str] | None = None) -> list[dict[str, Any]]:
    """The instances of one cluster (every cluster when ``cluster_id`` is None), in ``states`` if given."""
    filters = cluster_filters(cluster_id)
    if states:
        filters.append({"Name": "instance-state-name", "Values": states})
    return describe_all(ec2, "describe_instances", INSTANCES, Filters=filters)


def node_spec(record: ClusterRecord, model: EC2Resources, role: str) -> userdata.NodeSpec:
    """What the user-data of ``role`` needs, from the planned settings and what exists so far."""
    s = record.settings
    return userdata.NodeSpec(
        role=role, cluster=record.name, cluster_id=record.cluster_id,
        software=userdata.Software(**s["software"]), secret=model.node_secrets[role], tls=model.protocol == "tls",
        scheduler_ip=model.scheduler_ip if role == "worker" else None,
        nprocs=s["nprocs"], nthreads=s["nthreads"], memory=s["memory"],
        idle_timeout=s["idle_timeout"] if role == "scheduler" else 0.0, max_lifetime=s["max_lifetime"],
        spot=role == "worker" and bool(s["roles"][role].get("spot")),
    )


def request(record: ClusterRecord, model: EC2Resources, role: str) -> dict[str, Any]:
    """The RunInstances arguments of ``role`` (without counts, network, market or token)."""
    cfg = record.settings["roles"][role]
    script = userdata.user_data(node_spec(record, model, role))
    size = len(script.encode())
    if size > userdata.EC2_USER_DATA_LIMIT:
        raise LaunchError(f"The {role} user-data is {size} bytes, over EC2's 16 KB limit: shorten "
                          "`software.env` or `software.pip`.")
    tags = tag_list(record.name, record.cluster_id, role, model.protocol, cfg.get("tags", {}), owner=record.owner)
    call: dict[str, Any] = {
        "ImageId": record.settings["amis"][role],
        "InstanceType": cfg["type"],
        "UserData": script,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                              {"ResourceType": "volume", "Tags": tags}],
    }
    if cfg.get("key_name"):
        call["KeyName"] = cfg["key_name"]
    profile = cfg.get("iam_instance_profile") or model.roles.get(role)
    if profile:
        call["IamInstanceProfile"] = {"Name": profile}
    if cfg.get("root_volume_gb"):
        device = record.settings.get("root_devices", {}).get(role, "/dev/xvda")  # the AMI's own root device
        call["BlockDeviceMappings"] = [{"DeviceName": device, "Ebs": {
            "VolumeSize": cfg["root_volume_gb"], "VolumeType": "gp3", "DeleteOnTermination": True}}]
    return call


def run(ec2: Any, call: dict[str, Any], count: int, *, spot: bool, where: list[Subnet], security_group: str,
        want_public: bool, token: str, doing: str, cancelled: Callable[[], bool]) -> list[dict[str, Any]]:
    """Launch ``count`` instances in one RunInstances call; on capacity errors, spot in every subnet
    of ``where`` first, then on-demand in each. Returns fewer when AWS has no more capacity, or when
    ``cancelled()`` turns true between two calls."""
    import botocore.exceptions

    markets = ["spot", "on-demand"] if spot else ["on-demand"]
    launched: list[dict[str, Any]] = []
    last_error: BaseException | None = None
    for market in markets:
        for attempt, subnet in enumerate(where):
            if cancelled():
                return launched
            attempt_call = dict(call, MinCount=1, MaxCount=count - len(launched),
                                ClientToken=attempt_token(token, attempt, market),
                                **placement.network(subnet, security_group, want_public))
            if market == "spot":
                attempt_call["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                    "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
            try:
                launched += ec2.run_instances(**attempt_call)["Instances"]
            except botocore.exceptions.ClientError as exc:
                code = error_code(exc)
                if not (code in CAPACITY or (market == "spot" and code in SPOT_FALLBACK)):
                    raise
                last_error = exc
                continue
            if len(launched) >= count:
                return launched
    if launched or last_error is None:
        return launched  # fewer than asked: AWS had no more capacity anywhere allowed; poll shows the count
    zones = sorted({s["zone"] for s in where})
    error = explain(last_error, f"{doing} in every subnet of the zones {', '.join(zones)}")
    raise type(error)(f"{error} More zones may be allowed with `instance.zones`.")


def attempt_token(token: str, attempt: int, market: str) -> str:
    """The ``ClientToken`` of one attempt of a launch whose token base is ``token`` (the cluster's
    manifest lists the base: any instance carrying a token made from it is proven the cluster's)."""
    return f"{token}-{attempt}-{market}"


def profile_not_ready(exc: BaseException) -> bool:
    """True when RunInstances refused an instance profile IAM has not yet propagated to EC2."""
    return error_code(exc) == "InvalidParameterValue" and "instance profile" in str(exc).lower()


def terminate(ec2: Any, ids: list[str], sleep: Callable[[float], None], timeout: float = TERMINATE_WAIT) -> list[str]:
    """Terminate the instances ``ids`` (those AWS no longer knows are skipped) and wait until AWS says
    they are terminated. Returns the ids terminated."""
    import botocore.exceptions

    if not ids:
        return []
    try:
        ec2.terminate_instances(InstanceIds=ids)
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) != "InvalidInstanceID.NotFound":
            raise
        # A recorded instance AWS no longer knows (long gone): keep those it still knows.
        ids = sorted({i["InstanceId"] for i in by_id(ec2, ids) if i["State"]["Name"] != "terminated"})
        if not ids:
            return []
        ec2.terminate_instances(InstanceIds=ids)
    deadline = time.monotonic() + timeout
    while True:
        left = [i["InstanceId"] for i in by_id(ec2, ids) if i["State"]["Name"] != "terminated"]
        if not left:
            return ids
        if time.monotonic() > deadline:
            raise AwsError(f"Instances {left} did not terminate within {timeout:g} s; run `down` again.")
        sleep(TERMINATE_POLL)


def by_id(ec2: Any, ids: list[str]) -> list[dict[str, Any]]:
    """The instances among ``ids`` that AWS knows (a filter, so an unknown id is no error)."""
    return describe_all(ec2, "describe_instances", INSTANCES, Filters=[{"Name": "instance-id", "Values": ids}])


def console_output(ec2: Any, instance_id: str) -> str:
    """What the instance printed so far ("" if AWS has nothing or refuses)."""
    import botocore.exceptions

    try:
        reply = ec2.get_console_output(InstanceId=instance_id, Latest=True)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
        return ""
    return reply.get("Output") or ""  # botocore decodes the base64 itself
