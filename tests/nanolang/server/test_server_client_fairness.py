"""Fair admission per client on a real server: client A sends many requests at once, client B
one; B's request enters the engine in the next client turn, so its latency stays near a lone
request's (with a turn per request it waited behind all of A's). Clients are told apart by the
``user`` field, else the API key, else the peer address. One client's flood keeps the engine's
batches as full as the same requests queued at once (its throughput is unchanged)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
import openai
import pytest

from nanolang.server import ServerConfig
from runtime.sampling_params import SamplingParams
from tests.nanolang.server.conftest import MODEL
from tests.nanolang.server.live_server import LiveServer, live_server

MAX_SEQS = 4  # the engine runs four sequences at a time
FLOOD = 48  # client A's concurrent requests: twelve waves of four
TOKENS = 64  # each request's output (ignore_eos: every request costs the same)

Post = Callable[[int], Awaitable[None]]  # one request; its argument varies the prompt


@pytest.fixture(scope="module")
def server(tiny_llama: str) -> Iterator[LiveServer]:
    config = ServerConfig(model=tiny_llama, model_name=MODEL, llm_kwargs={"max_num_seqs": MAX_SEQS})
    with live_server(config) as live:
        yield live


def prompt(seed: int) -> list[int]:
    """A prompt of three token ids of the tiny vocabulary, distinct for seeds under 30,000."""
    return [1, 2 + seed % 100, 3 + (seed // 100) % 300]


def sdk_post(server: LiveServer, api_key: str, user: str | None = None) -> Post:
    """Completions through the openai SDK, as client ``api_key`` (and ``user``) sends them."""
    client = openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key=api_key, max_retries=0, timeout=120
    )
    extra = {"user": user} if user is not None else {}

    async def post(seed: int) -> None:
        out = await client.completions.create(
            model=MODEL,
            prompt=prompt(seed),
            max_tokens=TOKENS,
            temperature=0,
            extra_body={"ignore_eos": True},
            **extra,  # type: ignore[arg-type]
        )
        assert out.usage is not None and out.usage.completion_tokens == TOKENS

    return post


def peer_post(server: LiveServer, address: str) -> Post:
    """Completions with no key nor user, from loopback address ``address``."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    client = httpx.AsyncClient(transport=transport, timeout=120)

    async def post(seed: int) -> None:
        body = {
            "model": MODEL,
            "prompt": prompt(seed),
            "max_tokens": TOKENS,
            "temperature": 0,
            "ignore_eos": True,
        }
        response = await client.post(f"{server.url}/v1/completions", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == TOKENS

    return post


async def timed(post: Post, seed: int) -> float:
    start = time.monotonic()
    await post(seed)
    return time.monotonic() - start


async def flood_and_one(server: LiveServer, a: Post, b: Post, seed: int) -> tuple[float, int]:
    """A sends ``FLOOD`` requests at once; once they wait, B sends one. B's latency, and how
    many of A's requests finished before B's did."""
    finished: list[float] = []

    async def a_request(i: int) -> None:
        await a(seed + i)
        finished.append(time.monotonic())

    flood = [asyncio.create_task(a_request(i)) for i in range(FLOOD)]
    deadline = time.monotonic() + 60
    while (await asyncio.to_thread(server.metrics))["requests_waiting"] < FLOOD - 3 * MAX_SEQS:
        assert time.monotonic() < deadline, "client A's requests never queued"
        await asyncio.sleep(0.01)
    b_seconds = await timed(b, seed + FLOOD)
    b_done = time.monotonic()
    await asyncio.gather(*flood)
    return b_seconds, sum(t < b_done for t in finished)


CLIENTS = {
    "user": lambda s: (sdk_post(s, "shared", user="alice"), sdk_post(s, "shared", user="bob")),
    "api_key": lambda s: (sdk_post(s, "key-a"), sdk_post(s, "key-b")),
    "peer": lambda s: (peer_post(s, "127.0.0.1"), peer_post(s, "127.0.0.2")),
}


@pytest.mark.parametrize("told_apart_by", list(CLIENTS))
def test_one_request_of_another_client_is_not_crowded_out_by_a_flood(
    server: LiveServer, told_apart_by: str
) -> None:
    a, b = CLIENTS[told_apart_by](server)
    seed = 1000 * (1 + list(CLIENTS).index(told_apart_by))  # no prompt is cached from before

    async def main() -> tuple[float, float, int]:
        await b(seed - 1)  # warm
        lone = statistics.median([await timed(b, seed - 2 - k) for k in range(3)])
        b_seconds, a_before_b = await flood_and_one(server, a, b, seed)
        return lone, b_seconds, a_before_b

    lone, b_seconds, a_before_b = asyncio.run(main())
    # B waits for at most the wave of A's requests then running, then runs in the next one: about
    # two to three lone requests' time (measured 1.1-2.5x; 4.5x and 6.2x under load on the
    # 2-core machine, 2026-11-30). With a turn per request (or one identity for both) it waited
    # behind all of A's others, ten more waves: 17x, after 48 of 48 of A's. The count of A's
    # requests finished first is the steadier sign; the time bound sits between the two cases.
    assert a_before_b <= FLOOD // 2, (a_before_b, b_seconds, lone)
    assert b_seconds < 10 * lone, (b_seconds, lone)
    assert server.wait_idle()["requests_waiting"] == 0


def test_one_clients_flood_keeps_the_batches_full(server: LiveServer) -> None:
    """One client's requests take turns among themselves only: the engine takes as many
    iterations for its flood as for the same requests put in its queue at once, and the flood
    takes about as long as the same requests from as many clients (a turn per request, as
    admission was before clients shared a turn)."""
    params = SamplingParams(max_tokens=TOKENS, ignore_eos=True, temperature=0.0)
    backend = server.state.engine.backend
    one_client = sdk_post(server, "key-solo")
    clients = [sdk_post(server, f"key-{i}") for i in range(FLOOD)]

    async def queued_at_once(seed: int) -> None:
        calls = [backend.generate(prompt(seed + i), params) for i in range(FLOOD)]
        outs = await asyncio.gather(*calls)
        assert all(len(o.token_ids) == TOKENS for o in outs)

    async def from_one_client(seed: int) -> None:
        await asyncio.gather(*(one_client(seed + i) for i in range(FLOOD)))

    async def from_many_clients(seed: int) -> None:
        await asyncio.gather(*(post(seed + i) for i, post in enumerate(clients)))

    def run(work: Callable[[int], Awaitable[None]], seed: int) -> tuple[float, float]:
        before = server.wait_idle()["iterations_total"]
        start = time.monotonic()
        asyncio.run(work(seed))  # type: ignore[arg-type]
        seconds = time.monotonic() - start
        return server.wait_idle()["iterations_total"] - before, seconds

    base_iters, _ = run(queued_at_once, 5000)
    one_iters, one_s = run(from_one_client, 6000)
    many_iters, many_s = run(from_many_clients, 7000)
    # twelve waves of TOKENS steps (a wave's prompts start with its first step)
    assert base_iters >= FLOOD // MAX_SEQS * TOKENS
    assert one_iters <= base_iters * 1.1 + 2, (one_iters, base_iters)
    assert many_iters <= base_iters * 1.1 + 2, (many_iters, base_iters)
    assert one_s < 1.5 * many_s + 0.5, (one_s, many_s)
