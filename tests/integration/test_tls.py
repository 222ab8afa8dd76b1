"""HTTPS and mTLS end to end with certificates made by gridrun.certs: a real master, a real
worker and the SDK over TLS; certificates from another CA, or naming another worker, refused."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from gridrun import certs, transport
from gridrun._proto import worker_pb2 as pb
from gridrun._proto import worker_pb2_grpc
from gridrun.client import Client
from gridrun.errors import ClientError, ConfigError
from gridrun.worker.agent import Agent
from gridrun.worker.config import WorkerConfig
from tests.integration.conftest import Grid, RunningAgent


@pytest.fixture
async def tls_grid(tmp_path: Path) -> AsyncIterator[Grid]:
    pki = tmp_path / "pki"
    certs.init_ca(pki)
    master = certs.issue_master(pki, ["127.0.0.1", "localhost"])
    grid = Grid(tmp=tmp_path)
    grid.master_overrides = {
        "tls_cert": master.cert,
        "tls_key": master.key,
        "client_ca": pki / certs.CA_CERT,
    }
    await grid.start_master()
    await grid.api.aclose()
    grid.http = httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{grid.http_port}",
        verify=ssl.create_default_context(cafile=str(pki / certs.CA_CERT)),
        timeout=30,
    )
    try:
        yield grid
    finally:
        await grid.close()


def worker_tls(pki: Path, name: str) -> dict[str, Path]:
    issued = certs.issue_worker(pki, name)
    return {"tls_ca": pki / certs.CA_CERT, "tls_cert": issued.cert, "tls_key": issued.key}


async def test_https_and_mtls_end_to_end(tls_grid: Grid) -> None:
    pki = tls_grid.tmp / "pki"
    await tls_grid.add_worker("w1", **worker_tls(pki, "w1"))
    url = f"https://127.0.0.1:{tls_grid.http_port}"

    def through_the_sdk() -> tuple[str, bytes, str]:
        with Client(url, ca=pki / certs.CA_CERT) as client:
            task = client.submit("echo over tls")
            done = client.wait(task["id"], timeout_s=20)
            return done["state"], client.output_bytes(task["id"], "stdout"), done["worker_id"]

    state, out, worker = await asyncio.to_thread(through_the_sdk)
    assert (state, out, worker) == ("succeeded", b"over tls\n", "w1")

    async with httpx.AsyncClient() as plain:  # no plaintext HTTP on the TLS port
        with pytest.raises(httpx.TransportError):
            await plain.get(f"http://127.0.0.1:{tls_grid.http_port}/healthz")

    def without_the_ca() -> None:
        with Client(url) as client:
            client.health()

    with pytest.raises(
        ClientError, match="has a TLS certificate this client does not trust: set GRIDRUN_CA"
    ):
        await asyncio.to_thread(without_the_ca)


async def connect(grid: Grid, creds: grpc.ChannelCredentials, worker_id: str) -> grpc.StatusCode:
    """Open a worker stream by hand with these credentials; the status it ends with."""
    async with grpc.aio.secure_channel(f"127.0.0.1:{grid.grpc_port}", creds) as channel:
        call = worker_pb2_grpc.WorkerServiceStub(channel).Connect()
        try:
            await call.write(pb.WorkerMessage(hello=pb.Hello(worker_id=worker_id, slots=1)))
            first = await asyncio.wait_for(call.read(), 10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        assert isinstance(first, pb.MasterMessage)
        call.cancel()
        return grpc.StatusCode.OK


async def test_certificates_from_another_ca_or_none_are_refused(tls_grid: Grid) -> None:
    pki = tls_grid.tmp / "pki"
    ca = pki / certs.CA_CERT
    stranger = tls_grid.tmp / "stranger"
    certs.init_ca(stranger)
    foreign = certs.issue_worker(stranger, "w9")
    refused = transport.channel_credentials(ca, foreign.cert, foreign.key)
    assert await connect(tls_grid, refused, "w9") == grpc.StatusCode.UNAVAILABLE
    no_cert = transport.channel_credentials(ca, None, None)
    assert await connect(tls_grid, no_cert, "w9") == grpc.StatusCode.UNAVAILABLE

    # a worker that trusts another CA will not talk to this master either
    ours = certs.issue_worker(pki, "w8")
    wrong_ca = transport.channel_credentials(stranger / certs.CA_CERT, ours.cert, ours.key)
    assert await connect(tls_grid, wrong_ca, "w8") == grpc.StatusCode.UNAVAILABLE

    good = transport.channel_credentials(ca, ours.cert, ours.key)
    assert await connect(tls_grid, good, "w8") == grpc.StatusCode.OK
    workers = (await tls_grid.api.get("/v1/workers")).json()["workers"]
    assert [w["id"] for w in workers] == ["w8"]


async def test_a_worker_id_is_bound_to_its_certificate(tls_grid: Grid) -> None:
    pki = tls_grid.tmp / "pki"
    mine = certs.issue_worker(pki, "w1")
    creds = transport.channel_credentials(pki / certs.CA_CERT, mine.cert, mine.key)
    assert await connect(tls_grid, creds, "w2") == grpc.StatusCode.PERMISSION_DENIED
    assert (await tls_grid.api.get("/v1/workers")).json()["workers"] == []

    with pytest.raises(ConfigError, match="differs from the certificate"):
        Agent(
            WorkerConfig(
                master=f"127.0.0.1:{tls_grid.grpc_port}",
                data_dir=tls_grid.tmp / "workers" / "w2",
                name="w2",
                **worker_tls(pki, "w1"),
            )
        )
    # without --name, the certificate names the worker
    agent = Agent(
        WorkerConfig(
            master=f"127.0.0.1:{tls_grid.grpc_port}",
            data_dir=tls_grid.tmp / "workers" / "unnamed",
            **worker_tls(pki, "w3"),
        )
    )
    stop = asyncio.Event()
    tls_grid.agents.append(RunningAgent(agent, stop, asyncio.create_task(agent.run(stop))))
    await asyncio.wait_for(agent.connected.wait(), 10)
    assert agent.id == "w3"
    workers = (await tls_grid.api.get("/v1/workers")).json()["workers"]
    assert [w["id"] for w in workers] == ["w3"]


async def test_a_key_that_is_not_the_certificates_is_said_plainly(tmp_path: Path) -> None:
    """A master given another certificate's key said 'cannot listen ... (in use?)'."""
    pki = tmp_path / "pki"
    certs.init_ca(pki)
    master = certs.issue_master(pki, ["127.0.0.1"])
    other = certs.issue_worker(pki, "w1")
    grid = Grid(tmp=tmp_path, master_overrides={"tls_cert": master.cert, "tls_key": other.key})
    with pytest.raises(ConfigError, match="is not the key of the certificate") as refused:
        await grid.start_master()
    assert "in use" not in str(refused.value)
    with pytest.raises(ConfigError, match="is not the key of the certificate"):
        transport.channel_credentials(pki / certs.CA_CERT, other.cert, master.key)
    await grid.close()


async def test_a_worker_whose_certificate_the_master_refuses_says_why_and_stops(
    tls_grid: Grid,
) -> None:
    """gRPC calls both "Socket closed": a master requiring a client certificate the worker
    lacks, and one that does not take the certificate the worker has. The worker says which
    (not "Socket closed" for ever) and stops, as for a refused join token."""
    import os

    pki = tls_grid.tmp / "pki"
    stranger = tls_grid.tmp / "stranger"
    certs.init_ca(stranger)
    foreign = certs.issue_worker(stranger, "w9")
    tries: list[tuple[dict[str, Path], str]] = [
        ({}, "the master requires a client certificate and this worker has none"),
        (
            {"tls_cert": foreign.cert, "tls_key": foreign.key},
            f"the master does not accept this worker's certificate {foreign.cert}",
        ),
    ]
    for files, said in tries:
        agent = Agent(
            WorkerConfig(
                master=f"127.0.0.1:{tls_grid.grpc_port}",
                data_dir=tls_grid.tmp / "workers" / "w9",
                name="w9",
                base_env=dict(os.environ),
                tls_ca=pki / certs.CA_CERT,
                **files,
            )
        )
        await asyncio.wait_for(agent.run(asyncio.Event()), 30)  # it ends by itself
        assert agent.refused is not None
        assert agent.refused.startswith(said), agent.refused
    workers = (await tls_grid.api.get("/v1/workers")).json()["workers"]
    assert workers == []
    # and one that is taken is not refused by the diagnosis
    ours = certs.issue_worker(pki, "w8")
    address = f"127.0.0.1:{tls_grid.grpc_port}"
    assert (
        await asyncio.to_thread(
            transport.tls_refusal, address, pki / certs.CA_CERT, ours.cert, ours.key
        )
        is None
    )
