"""Prometheus metrics (``prometheus_client``): the engine's gauges and counters read at scrape
time, and latency histograms observed as requests finish."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from runtime.outputs import RequestOutput

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (prometheus type, help); values come from EngineClient.counters()
ENGINE_METRICS = {
    "requests_running": ("gauge", "Requests in the running batch."),
    "requests_waiting": ("gauge", "Requests waiting to be admitted."),
    "kv_blocks_used": ("gauge", "KV-cache blocks in use."),
    "kv_blocks_total": ("gauge", "KV-cache blocks in all."),
    "iterations_total": ("counter", "Engine iterations run."),
    "preemptions_total": ("counter", "Sequences preempted (to be recomputed)."),
    "requests_finished_total": ("counter", "Requests finished."),
    "requests_aborted_total": ("counter", "Requests aborted (e.g. the client went away)."),
    "prompt_tokens_total": ("counter", "Prompt tokens computed (prefill)."),
    "generation_tokens_total": ("counter", "Tokens generated."),
    "iteration_seconds": ("gauge", "Duration of the last engine iteration, seconds."),
    "batch_tokens": ("gauge", "Tokens in the last engine iteration."),
    "batch_sequences": ("gauge", "Sequences in the last engine iteration."),
}

LATENCY_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0,
)  # fmt: skip


class EngineCollector:
    """The engine's counters as Prometheus families, read when scraped (plain int reads)."""

    def __init__(self, read: Callable[[], dict[str, float]], rate: Callable[[], float]) -> None:
        self.read, self.rate = read, rate

    def collect(self) -> Iterator[Metric]:
        values = self.read()
        for name, (kind, help_text) in ENGINE_METRICS.items():
            if kind == "counter":
                yield CounterMetricFamily(
                    f"nanolang_{name.removesuffix('_total')}", help_text, value=values[name]
                )
            else:
                yield GaugeMetricFamily(f"nanolang_{name}", help_text, value=values[name])
        yield GaugeMetricFamily(
            "nanolang_generation_tokens_per_second",
            "Tokens generated per second (10 s window).",
            value=self.rate(),
        )


class ServingMetrics:
    """One registry per app (tests run several apps in one process)."""

    def __init__(self, read: Callable[[], dict[str, float]], rate: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(EngineCollector(read, rate))  # type: ignore[arg-type]

        def histogram(name: str, help_text: str) -> Histogram:
            return Histogram(name, help_text, buckets=LATENCY_BUCKETS, registry=self.registry)

        self.ttft = histogram(
            "nanolang_time_to_first_token_seconds", "Arrival to first output token, seconds."
        )
        self.itl = histogram(
            "nanolang_inter_token_latency_seconds",
            "Gap between output tokens, seconds (each request's mean gap, once per gap).",
        )
        self.e2e = histogram(
            "nanolang_e2e_request_latency_seconds", "Arrival to the last output token, seconds."
        )

    def observe(self, out: RequestOutput) -> None:
        """Record a finished request's latencies (engine clock: ``time.perf_counter``)."""
        m = out.metrics
        if m.first_token_time is not None:
            self.ttft.observe(m.first_token_time - m.arrival_time)
        if m.finished_time is None:
            return
        self.e2e.observe(m.finished_time - m.arrival_time)
        gaps = len(out.token_ids) - 1
        if m.first_token_time is not None and gaps > 0:
            mean = (m.finished_time - m.first_token_time) / gaps
            for _ in range(gaps):
                self.itl.observe(mean)

    def render(self) -> bytes:
        return generate_latest(self.registry)
