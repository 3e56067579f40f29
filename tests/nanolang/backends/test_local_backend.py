"""The in-process engine backend: one step's outputs reach their callers together, and a
failing progress callback loses nobody's result."""

from __future__ import annotations

import asyncio
import logging

import pytest

from nanolang.backends.fair_queue import Owner
from nanolang.backends.local import LocalBackend
from runtime.outputs import RequestOutput
from runtime.sampling_params import SamplingParams


def test_one_wake_up_per_step_for_many_outputs(backend: LocalBackend) -> None:
    params = SamplingParams(max_tokens=3, ignore_eos=True, temperature=0.0)
    prompts = [[1, 2 + i, 3] for i in range(12)]

    async def main() -> tuple[list, int]:
        loop = asyncio.get_running_loop()
        calls = 0
        plain = loop.call_soon_threadsafe

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return plain(*args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        outputs = await asyncio.gather(*(backend.generate(p, params) for p in prompts))
        return outputs, calls

    outputs, calls = asyncio.run(main())
    assert [len(o.token_ids) for o in outputs] == [3] * len(prompts)
    assert all(o.finished for o in outputs)
    # the twelve requests finish in the same few steps: one hand-over per step, not per output
    assert calls < len(prompts)


def test_a_failing_progress_callback_loses_no_result(
    backend: LocalBackend, caplog: pytest.LogCaptureFixture
) -> None:
    params = SamplingParams(max_tokens=4, ignore_eos=True, temperature=0.0)
    seen: list[int] = []

    def broken(output: object) -> None:
        raise RuntimeError("a broken progress callback")

    async def main() -> list:
        return await asyncio.gather(
            backend.generate_node([5, 6, 7], params, None, on_progress=broken),  # type: ignore[arg-type]
            backend.generate_node(
                [5, 6, 8], params, None, on_progress=lambda o: seen.append(len(o.token_ids))  # type: ignore[arg-type]
            ),
            backend.generate([5, 6, 9], params),
        )

    with caplog.at_level(logging.ERROR, logger="nanolang.backends.local"):
        outputs = asyncio.run(main())
    assert [len(o.token_ids) for o in outputs] == [4, 4, 4]
    assert seen and seen == sorted(seen) and max(seen) < 4
    assert "on_progress of request" in caplog.text


def test_a_stream_consumer_that_lags_gets_the_newest_output_not_every_step(
    backend: LocalBackend,
) -> None:
    """A consumer that stops reading (a client that reads slowly) is handed the newest
    cumulative output when it asks again, not one per step it missed (every one was queued: a
    copy of the whole output per step, memory quadratic in the output's length)."""
    params = SamplingParams(max_tokens=40, ignore_eos=True, temperature=0.0)

    async def main() -> tuple[RequestOutput, list[RequestOutput]]:
        stream = backend.stream([1, 2, 3], params)
        first = await anext(stream)
        while backend.llm.has_unfinished_requests():  # the engine runs on without us
            await asyncio.sleep(0.01)
        return first, [output async for output in stream]

    first, rest = asyncio.run(main())
    assert not first.finished and len(first.token_ids) < 40
    assert len(rest) <= 2, [len(o.token_ids) for o in rest]  # the newest partial, the final
    assert rest[-1].finished and len(rest[-1].token_ids) == 40
    whole = asyncio.run(backend.generate([1, 2, 3], params))
    assert rest[-1].token_ids == whole.token_ids and rest[-1].text == whole.text


def small_backend() -> LocalBackend:
    from runtime import LLM
    from runtime.tiny import default_model_dir

    llm = LLM(str(default_model_dir()), dtype="float32", device="cpu", max_num_seqs=2)
    return LocalBackend(llm)


def test_a_later_client_enters_the_engine_in_its_turn() -> None:
    """Requests with an owner wait in the backend and enter the engine round-robin across
    clients: one request of a client that comes after twelve of another (twelve requests of
    one client) finishes as soon as the engine has room for it, with the two running then and
    the one fed beside it (first come first served, it finished last)."""
    local = small_backend()
    params = SamplingParams(max_tokens=32, ignore_eos=True, temperature=0.0)
    order: list[str] = []
    held: list[int] = []
    done_before_b: list[int] = []

    async def run(name: str, prompt: list[int], client: str) -> None:
        await local.generate(prompt, params, Owner(client, name))
        order.append(name)

    async def main() -> None:
        big = [asyncio.create_task(run(f"a{i}", [1, 2, 3 + i], "a")) for i in range(12)]
        await asyncio.sleep(0.05)
        held.append(local.num_held)
        done_before_b.append(len(order))
        await asyncio.gather(run("b", [4, 5, 6], "b"), *big)

    try:
        asyncio.run(main())
    finally:
        local.close()
    assert held[0] > 0  # the big group's requests were held, not all in the engine's queue
    assert sorted(order) == sorted([f"a{i}" for i in range(12)] + ["b"])
    assert done_before_b[0] + 3 < 12, order  # it came while most of the twelve waited
    assert order.index("b") <= done_before_b[0] + 3, order
    assert local.num_held == 0


def test_closing_fails_the_held_requests_too() -> None:
    local = small_backend()
    params = SamplingParams(max_tokens=200, ignore_eos=True, temperature=0.0)

    async def main() -> list[object]:
        calls = [local.generate([1, 2, 3 + i], params, Owner("c", "r")) for i in range(6)]
        tasks = [asyncio.create_task(c) for c in calls]
        await asyncio.sleep(0.05)
        await asyncio.to_thread(local.close)
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "backend closed" in str(r) for r in results)
    assert local.num_held == 0
