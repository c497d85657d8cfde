"""The API keeps the contract its OpenAPI document states (schemathesis against a live server).

A real server (the aiohttp app on a loopback port, SQLite) serves an organisation with an
API key, evaluators, candidates and a booking. schemathesis reads `/api/v1/openapi.json`
from it and sends every operation a bounded number of generated requests, twice: with
random ids (mostly 404s) and with the ids of real rows, so the handlers' real paths run.
Every response must be documented: no 5xx, a documented status code, a documented content
type, a body that matches its schema.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import load_settings
from scheduler.orgs import create_organisation
from tests.conftest import T0, app_environ, token_of

# Generated requests per operation, per kind of id (random, real) and per mode (valid,
# invalid input); the whole test stays under a minute on two busy cores.
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 4}


# What the document promises about responses. Not `positive_data_acceptance`: a document
# cannot state every rule the server enforces (an IANA zone, an interval's end after its
# start, `start` required to move), and those answers are the documented 422.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class LiveServer:
    """The app served on a loopback port from its own thread and event loop."""

    base: str
    api_key: str
    loop: asyncio.AbstractEventLoop
    ids: dict[str, str] = field(default_factory=dict)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Any]:
    from aiohttp import web

    root = tmp_path_factory.mktemp("fuzz")
    shutil.copy(sqlite_template, root / "viva.db")
    config = load_settings(environ=app_environ(f"sqlite+aiosqlite:///{root / 'viva.db'}", root))
    clock = FrozenClock(T0)
    app = create_app(config, clock=clock)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"] = runner
        state["port"] = runner.addresses[0][1]

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        finally:
            started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="live-server", daemon=True)
    thread.start()
    assert started.wait(60) and "port" in state, "the live server did not start"

    async def organisation() -> str:
        async with app[keys.DB].write() as session:
            new = await create_organisation(
                session, name="Fuzz", contact_email="contact@fuzz.example", now=clock.now()
            )
        return new.api_key

    server = LiveServer(f"http://127.0.0.1:{state['port']}", "", loop)
    server.api_key = server.run(organisation())
    try:
        _seed(server)
        yield server
    finally:
        server.run(state["runner"].cleanup())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def _seed(server: LiveServer) -> None:
    """Evaluators, candidates and a booking, through the API as an integrator would."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {server.api_key}"
    api = server.base + "/api/v1"
    weekly = [{"day": d, "start": "09:00", "end": "12:00"} for d in ("mon", "tue", "wed", "thu")]
    for n in range(2):
        ev = http.post(
            f"{api}/evaluators",
            json={
                "name": f"Evaluator {n}",
                "email": f"ev{n}@fuzz.example",
                "timezone": "Europe/Paris",
                "languages": ["en"],
            },
        )
        assert ev.status_code == 201, ev.text
        server.ids["evaluator" if n == 0 else "evaluator_to_delete"] = ev.json()["id"]
        put = http.put(f"{api}/evaluators/{ev.json()['id']}/availability", json={"weekly": weekly})
        assert put.status_code == 200, put.text
    for n in range(2):
        cand = http.post(
            f"{api}/candidates",
            json={"name": f"Candidate {n}", "email": f"c{n}@fuzz.example", "language": "en"},
        )
        assert cand.status_code == 201, cand.text
        server.ids.setdefault("candidate", cand.json()["id"])
        link = cand.json()["link"]
    token = token_of(link)
    slots = requests.get(f"{server.base}/c/{token}/slots").json()["slots"]
    booked = requests.post(f"{server.base}/c/{token}/booking", json={"start": slots[-1]["start"]})
    assert booked.status_code == 201, booked.text
    server.ids["booking"] = booked.json()["id"]
    # Disabled, to a public literal address: nothing is delivered while the fuzzer runs.
    hook = http.post(
        f"{api}/webhooks",
        json={"url": "https://93.184.216.34/hook", "events": ["booking.created"], "enabled": False},
    )
    assert hook.status_code == 201, hook.text
    server.ids["webhook"] = hook.json()["id"]


def _real_ids(server: LiveServer, operation: APIOperation) -> dict[str, str]:
    """The path parameters of an existing row for this operation (recordings: none exist)."""
    path = operation.path
    kind = (
        "evaluator"
        if path.startswith("/api/v1/evaluators")
        else "candidate"
        if path.startswith("/api/v1/candidates")
        else "webhook"
        if path.startswith("/api/v1/webhooks")
        else "booking"
    )
    if kind == "evaluator" and operation.method == "delete":
        kind = "evaluator_to_delete"  # the others keep theirs for the operations after it
    params = {"id": server.ids[kind]} if "{id}" in path else {}
    for name in ("recording_id", "delivery_id"):
        if "{" + name + "}" in path:
            params[name] = str(uuid.uuid4())
    return params


def _describe(exc: BaseException) -> str:
    """The failure with its sub-failures and its curl line (a group's str is only its title)."""
    parts = [str(exc), *(getattr(exc, "__notes__", None) or [])]
    for sub in getattr(exc, "exceptions", ()):
        parts.append(_describe(sub))
    return "\n".join(parts)


@pytest.mark.slow
def test_every_response_is_the_documented_one(live_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server.base}/api/v1/openapi.json")
    schema.config.update(base_url=live_server.base)
    auth = {"Authorization": f"Bearer {live_server.api_key}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17

    for operation in operations:
        rounds = [{}, _real_ids(live_server, operation)] if "{" in operation.path else [{}]
        for path_parameters, mode in itertools.product(rounds, GenerationMode):

            @settings(
                max_examples=EXAMPLES[mode],
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(mode, path_parameters=path_parameters or None))
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=auth, checks=CHECKS, timeout=30)

            try:
                run()
            except (Exception, FailureGroup) as exc:  # every operation's failures, reported
                failures.append(f"{mode.value} {operation.label}: {_describe(exc)}")
    assert not failures, "\n\n".join(failures)
