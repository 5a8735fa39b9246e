"""The REST API: profiles, clusters, operations, logs. Every verb is authenticated."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import tornado.iostream
import tornado.web

from ..core import inventory, lifecycle, paths
from . import bodies, models
from .base import BaseHandler
from .operations import describe
from .survey import SURVEY

STREAM_INTERVAL = 0.25  # seconds between two looks at an operation's events when streaming


class ProfilesHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """Every profile, and the folder they are read from."""
        rows = await self.core(lifecycle.profiles)
        self.reply({"profiles": rows, "folder": str(paths.profiles_dir())})


class ProfileHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """One profile, resolved (its defaults and parents merged)."""
        from ..core.profiles import load

        rows = await self.core(lifecycle.profiles)
        row = next((r for r in rows if r["name"] == name), None)
        if row is None:
            self.fail(404, f"There is no profile named {name!r} (profiles: {', '.join(r['name'] for r in rows)}).")
        loaded = await self.core(load, name)
        self.reply({**row, "data": loaded.data})


class PlanHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, profile: str) -> None:
        """What ``up`` of ``profile`` with the body's name, workers and overrides would create and cost."""
        data = self.body()
        bodies.known(data, {"name", "workers", "overrides"})
        the_plan = await self.core(lifecycle.plan, profile, bodies.overrides(data), name=bodies.text(data, "name"),
                                   workers=bodies.count(data, "workers", minimum=1))
        self.reply(models.plan(the_plan))


class ClustersHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """The clusters of the registry and the tags, with their progress while they start."""
        found = await SURVEY.get(self)
        self.reply({**models.survey(found, self.store),
                    "operations": [op.to_json() for op in self.store.all() if not op.done]})

    @tornado.web.authenticated
    async def post(self) -> None:
        """Start a cluster from a profile; answers 202 with the operation to follow."""
        data = self.body()
        bodies.known(data, {"profile", "name", "workers", "overrides"})
        profile = bodies.text(data, "profile") or "local"
        name, workers = bodies.text(data, "name"), bodies.count(data, "workers", minimum=1)
        operation = await self.core(lifecycle.start_up, profile, name=name, workers=workers,
                                    overrides=bodies.overrides(data))
        self.accepted(self.store.add(operation))


class ClusterHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        record = await self.core(inventory.find, name)
        self.reply(models.cluster(record, self.store))

    @tornado.web.authenticated
    async def patch(self, name: str) -> None:
        """``{"workers": N}`` scales (202, an operation); ``{"adapt": {"minimum": a, "maximum": b}}`` adapts."""
        data = self.body()
        bodies.known(data, {"workers", "adapt"})
        if ("workers" in data) == ("adapt" in data):
            raise bodies.BadBody("Give exactly one of the fields 'workers' (to scale) or 'adapt' (to adapt).")
        if "workers" in data:
            workers = bodies.count(data, "workers", required=True)
            operation = await self.core(lifecycle.start_scale, name, workers)
            self.accepted(self.store.add(operation))
            return
        bounds = data["adapt"]
        if not isinstance(bounds, dict):
            raise bodies.BadBody(f"The field 'adapt' must be an object {{minimum, maximum}}, not {bounds!r}.")
        bodies.known(bounds, {"minimum", "maximum"})
        minimum = bodies.count(bounds, "minimum") or 0
        maximum = bodies.count(bounds, "maximum", required=True, minimum=1)
        record = await self.core(lifecycle.adapt, name, minimum, maximum)
        SURVEY.forget()
        self.reply(models.cluster(record, self.store))

    @tornado.web.authenticated
    async def delete(self, name: str) -> None:
        """Shut the cluster down (202, an operation). ``?owner=`` acts on another owner's cluster."""
        await self.core(inventory.find, name, self.get_argument("owner", None))
        operation = await self.core(lifecycle.start_down, [name], owner=self.get_argument("owner", None))
        self.accepted(self.store.add(operation))


class LogsHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """Each process's or instance's log output."""
        self.reply({"name": name, "logs": await self.core(lifecycle.logs, name)})


class OperationsHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.reply({"operations": [op.to_json() for op in self.store.all()]})


class OperationHandler(BaseHandler):
    def _operation(self, op_id: str) -> Any:
        operation = self.store.get(op_id)
        if operation is None:
            self.fail(404, f"There is no operation {op_id!r} on this server (it may have ended long ago, "
                           "or been started by another process: see the cluster list).")
        return operation

    def _since(self) -> int:
        raw = self.get_argument("since", "0")
        if not raw.isdigit():
            raise bodies.BadBody(f"The parameter 'since' must be a whole number >= 0, not {raw!r}.")
        return int(raw)

    @tornado.web.authenticated
    def get(self, op_id: str) -> None:
        """The operation's state and its events after ``?since=SEQ``."""
        self.reply(describe(self._operation(op_id), self._since()))


class CancelHandler(OperationHandler):
    @tornado.web.authenticated
    def post(self, op_id: str) -> None:  # type: ignore[override]
        """Cancel the operation (what it started is torn down); 202 while that runs."""
        operation = self._operation(op_id)
        cancelled = operation.cancel()
        self.reply({**operation.to_json(), "cancelled": cancelled}, 202 if cancelled else 200)


class EventsHandler(OperationHandler):
    @tornado.web.authenticated
    async def get(self, op_id: str) -> None:  # type: ignore[override]
        """The operation's events as server-sent events (``text/event-stream``) until it ends."""
        operation, seen = self._operation(op_id), self._since()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        while True:
            finished = operation.done
            for event in operation.events_since(seen):
                seen = event.seq
                self.write(f"id: {event.seq}\nevent: {event.stage}\ndata: {json.dumps(event.to_json())}\n\n")
            try:
                await self.flush()
            except tornado.iostream.StreamClosedError:
                return
            if finished:
                break
            await asyncio.sleep(STREAM_INTERVAL)
        self.finish()
