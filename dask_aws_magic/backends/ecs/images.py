"""The container image: by default the public Dask image whose Python, dask and distributed are the
client's; any image (ECR included) from ``software.image``."""

from __future__ import annotations

from ...core.errors import ProfileError

REGISTRY = "ghcr.io/dask/dask"
# The Python versions the Dask project builds its image with, by the first dask release that has them.
PYTHONS = (
    ("2024.8.1", ("3.10", "3.11", "3.12")),
    ("2025.1.0", ("3.10", "3.11", "3.12", "3.13")),
    ("2025.12.0", ("3.11", "3.12", "3.13")),
    ("2026.6.0", ("3.11", "3.12", "3.13", "3.14")),
)
FIRST = "2024.8.1"


def _key(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def pythons_for(dask: str) -> tuple[str, ...]:
    """The Python versions of the public Dask images of release ``dask`` (none before ``FIRST``)."""
    found: tuple[str, ...] = ()
    for release, pythons in PYTHONS:
        if _key(dask) >= _key(release):
            found = pythons
    return found


def default_image(python: str, dask: str, distributed: str) -> str:
    """The public Dask image matching the client, or a :class:`ProfileError` naming the versions."""
    if dask != distributed:
        raise ProfileError(f"This kernel has dask {dask} but distributed {distributed}; the public Dask images "
                           "ship them at one version. Install matching versions, or set `software.image`.")
    pythons = pythons_for(dask)
    if python not in pythons:
        have = f"Python {', '.join(pythons)}" if pythons else "no Python (it predates the images we know)"
        raise ProfileError(
            f"No public Dask image matches this kernel (Python {python}, dask and distributed {dask}): the "
            f"dask {dask} images have {have}. Set `software.image` to an image with Python {python} and dask "
            f"{dask} (an ECR image of your own, say), or use a kernel with a Python the images have."
        )
    return f"{REGISTRY}:{dask}-py{python}"
