"""The server's survey of the clusters, shared by the requests that ask at once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..core import inventory

if TYPE_CHECKING:
    from ..core.inventory import Survey
    from .base import BaseHandler

SURVEY_TTL = 1.0  # sidebars polling at once share one survey (the registry, each scheduler) per this many seconds


class _SharedSurvey:
    """One survey of the server's shared inventory at a time (AWS asked at most every 30 s and after an
    action, each scheduler at every survey), its answer reused by requests within ``SURVEY_TTL``."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._answer: Survey | None = None
        self._at = 0.0

    async def get(self, handler: BaseHandler) -> Survey:
        async with self._lock:
            loop = asyncio.get_running_loop()
            if self._answer is None or loop.time() - self._at > SURVEY_TTL:
                self._answer = await handler.core(inventory.shared().survey)
                self._at = loop.time()
            return self._answer

    def forget(self) -> None:
        """After a change made here (launch, scale, shut down): the next survey asks AWS again."""
        self._answer = None
        inventory.shared().changed()


SURVEY = _SharedSurvey()
