"""Task sizes: Fargate's allowed cpu and memory pairs, and what a task of the profile asks for."""

from __future__ import annotations

from ...core.errors import ProfileError
from ...core.units import parse_memory

MIB = 2**20
# vCPU -> the memory sizes (MiB) Fargate accepts with it: (first, last, step).
FARGATE_PAIRS: dict[float, tuple[int, int, int]] = {
    0.25: (512, 2048, 512),  # 512 MiB, 1 GiB, 2 GiB
    0.5: (1024, 4096, 1024),
    1: (2048, 8192, 1024),
    2: (4096, 16384, 1024),
    4: (8192, 30720, 1024),
    8: (16384, 61440, 4096),
    16: (32768, 122880, 8192),
}
DEFAULTS = {"scheduler": (1.0, 4096), "worker": (2.0, 8192)}  # vCPU, MiB


def fargate_memories(vcpus: float) -> list[int]:
    """The memory sizes (MiB) Fargate allows with ``vcpus``."""
    first, last, step = FARGATE_PAIRS[vcpus]
    sizes = list(range(first, last + 1, step))
    return [512, 1024, 2048] if vcpus == 0.25 else sizes


def _gib(mib: int) -> str:
    return f"{mib / 1024:g} GiB"


def valid_pairs() -> str:
    """Every allowed pair, in words, for error messages."""
    return "; ".join(f"cpu {cpu:g}: memory {', '.join(_gib(m) for m in fargate_memories(cpu))}"
                     if len(fargate_memories(cpu)) <= 4 else
                     f"cpu {cpu:g}: memory {_gib(fargate_memories(cpu)[0])} to {_gib(fargate_memories(cpu)[-1])} "
                     f"in steps of {_gib(FARGATE_PAIRS[cpu][2])}"
                     for cpu in FARGATE_PAIRS)


def task_size(section: dict[str, object], role: str, fargate: bool) -> tuple[float, int]:
    """The vCPUs and memory (MiB) of ``role``'s tasks from ``ecs.<role>``; on Fargate, one of the
    allowed pairs or a :class:`ProfileError` listing them."""
    default_cpu, default_memory = DEFAULTS[role]
    cpu = float(section.get("cpu", default_cpu))  # type: ignore[arg-type]
    raw = section.get("memory")
    memory = default_memory if raw is None else (parse_memory(raw) or default_memory * MIB) // MIB
    if not fargate:
        if cpu <= 0 or memory < 128:
            raise ProfileError(f"`ecs.{role}.cpu` must be above 0 and `ecs.{role}.memory` at least 128 MiB "
                               f"(got cpu {cpu:g}, memory {memory} MiB).")
        return cpu, int(memory)
    if cpu not in FARGATE_PAIRS:
        raise ProfileError(f"`ecs.{role}.cpu` is {cpu:g}, which Fargate does not offer: use one of "
                           f"{', '.join(f'{c:g}' for c in FARGATE_PAIRS)} (vCPUs). Valid pairs: {valid_pairs()}.")
    if memory not in fargate_memories(cpu):
        raise ProfileError(f"`ecs.{role}.memory` is {_gib(int(memory))}, which Fargate does not allow with cpu "
                           f"{cpu:g}: pick one of {', '.join(_gib(m) for m in fargate_memories(cpu))} (or change "
                           f"`ecs.{role}.cpu`). Valid pairs: {valid_pairs()}.")
    return cpu, int(memory)


def check_profile(data: dict[str, object], source: str) -> None:
    """Fail early (before anything starts) on task sizes Fargate refuses."""
    if data.get("backend") != "fargate":
        return
    section = data.get("ecs") or {}
    assert isinstance(section, dict)
    for role in ("scheduler", "worker"):
        try:
            task_size(dict(section.get(role) or {}), role, fargate=True)
        except ProfileError as exc:
            raise ProfileError(f"In {source}, {exc}") from None
