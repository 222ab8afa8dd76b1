"""A master whose PostgreSQL goes away (a real TCP link to it, cut and restored): it says it is
not ready, answers 503 at once instead of hanging, and once the database is back it carries on
with nothing acknowledged lost — including a result a worker reported during the outage."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import pg
from tests.helpers import eventually_async
from tests.integration.conftest import Grid
from tests.proxy import Proxy

pytestmark = [pytest.mark.pg]


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[Grid, Proxy]]:
    async with pg.database() as url:
        proxy = Proxy(pg.address_of(url))
        await proxy.start()
        through = f"postgresql://postgres@127.0.0.1:{proxy.port}/{pg.name_of(url)}"
        grid = Grid(tmp=tmp_path, master_overrides={"db": through})
        try:
            await grid.start_master()
            yield grid, proxy
        finally:
            await grid.close()  # also when the link is still cut
            await proxy.cut()


async def test_the_database_going_away_gives_503s_and_loses_nothing(
    proxied: tuple[Grid, Proxy], tmp_path: Path
) -> None:
    grid, proxy = proxied
    await grid.add_worker("w1")
    started = tmp_path / "started"
    before = await grid.submit(cmd=f"touch {started}; sleep 1; echo done", shell=True)
    await eventually_async(started.exists, 10)
    await proxy.cut()  # the task finishes while the master cannot write its result

    t0 = time.monotonic()
    health = await grid.api.get("/healthz")
    assert health.status_code == 503, health.text
    assert "not reachable" in health.json()["detail"]
    refused = await grid.api.post("/v1/tasks", json={"cmd": "true", "shell": True})
    assert refused.status_code == 503, refused.text
    assert "unreachable" in refused.json()["detail"]
    assert time.monotonic() - t0 < 5  # answered, not hung
    await eventually_async(lambda: grid.agents[0].agent.unacked, 10)  # kept by the worker

    await proxy.restore()

    async def ready() -> bool:
        return (await grid.api.get("/healthz")).status_code == 200

    await eventually_async(ready, 15)
    done = await grid.wait(before["id"], timeout=30)
    assert done["state"] == "succeeded"
    assert (await grid.output(before["id"]))["stdout"]["text"] == "done\n"
    after = await grid.submit(cmd="echo after", shell=True)
    assert (await grid.wait(after["id"]))["state"] == "succeeded"
    page = (await grid.api.get("/v1/tasks")).json()["tasks"]
    assert sorted(t["id"] for t in page) == sorted([before["id"], after["id"]])  # no ghost
