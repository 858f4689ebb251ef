"""Overload: what the scoring service answers below and above its capacity.

Prints, per rate (open model: R single-customer calls/s with 20 raw transactions each, for a
bounded time each, loopback only):
  rate R: sent N, 200 A, 503 B, other C; accepted p50 X ms, p99 Y ms; shed p50 Z ms
          (sender late p99 L ms: how late the load generator started calls, for noise)
Past `max_in_flight` /score calls in flight in a worker, the service answers 503 with
`Retry-After` without scoring (serving/admission.py), so the calls it accepts keep a short
queue, and the refused ones only wait for the worker's event loop to read them. Without that
limit, 2 cores (capacity about 300 calls/s then) measured a median of 2.2 s at 400 calls/s and
14.5 s at 700 (p99 24 s), all 200. Latency runs from the moment a call was due (no coordinated
omission). Every call has a timeout and every rate a fixed duration, so the run ends by itself
even if the server falls behind.

Then the health probes under a batch load: two clients per accepted call slot send batches of
1,000 customers back to back while /livez and /readyz are asked every 100 ms, as a platform's
probes would (a probe that times out restarts the pod or takes it out of rotation):
  probes under batch load: /livez p50 X ms, p99 Y ms, max Z ms; /readyz ...; N customers/s
(`--probe-lines 250`: customers of 250 lines, bodies of about 30 MB, which the service parses
beside its event loop.)

The service runs as in bench_serve.py (whose helpers this imports): the project's champions
(`make train` first if there are none), a temporary home with a copy of the configs, its own
BentoML store and decision log. `--max-in-flight N` sets the limit in that copy only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import uvloop
import yaml
from bench_serve import (
    BIN,
    HEADERS,
    LATE,
    OUTCOMES,
    TX_PER_CUSTOMER,
    _champion_cuts,
    _customers,
    _our_payloads,
    _say,
    _scratch_env,
    free_port,  # the tests' server helpers, which bench_serve imports
    open_load,
    positive,
    start_server,
    stop_server,
    wait_ready,
)
from stopping import stop_on_sigterm

from crm_ltv.features.config import load_config
from crm_ltv.features.paths import Paths
from crm_ltv.serving.config import ServingConfig
from crm_ltv.training.config import TrainConfig

RATES = (400, 800, 1200)  # below, about at and above capacity on 2 cores (README)
PROBES = ("/livez", "/readyz")
PROBE_EVERY = 0.1  # seconds


def _ms(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.1f} ms" if values else "-"


def _report(url: str, bodies: list[bytes], rates: list[int], seconds: float, timeout: float):
    # A full collection over this process's imports (pandas, MLflow) stalled the load generator
    # for about 170 ms once per run, charged to the server as latency and sent as a burst.
    gc.collect()
    gc.freeze()
    uvloop.run(open_load(url, bodies, 20, 3, timeout))  # warm-up
    for rate in rates:
        got = uvloop.run(open_load(url, bodies, rate, seconds, timeout))
        ok, shed, other = (got[kind] for kind in OUTCOMES)
        print(
            f"  rate {rate}: sent {len(ok) + len(shed) + len(other)}, 200 {len(ok)}, "
            f"503 {len(shed)}, other {len(other)}; accepted p50 {_ms(ok, 50)}, "
            f"p99 {_ms(ok, 99)}; shed p50 {_ms(shed, 50)} (sender late p99 {_ms(got[LATE], 99)})",
            flush=True,
        )
        time.sleep(1)  # let the workers drain before the next rate


async def _probes_under_load(
    base: str, batch: bytes, size: int, clients: int, seconds: float, timeout: float
) -> tuple[dict[str, list[float]], float]:
    """Each probe's latencies (s; a probe without a 200 within `timeout` counts as `timeout`)
    while `clients` send the batch back to back; and the customers/s answered meanwhile."""
    latencies: dict[str, list[float]] = {path: [] for path in PROBES}
    answered = 0
    deadline = time.perf_counter() + seconds
    limits = aiohttp.ClientTimeout(total=timeout)
    # A connection per call, so the kernel spreads them over the workers (bench_serve).
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=limits) as session:

        async def client() -> None:
            nonlocal answered
            while time.perf_counter() < deadline:
                try:
                    async with session.post(f"{base}/score", data=batch, headers=HEADERS) as r:
                        await r.read()
                        answered += size if r.status == 200 else 0
                except (aiohttp.ClientError, TimeoutError):
                    pass

        async def probe(path: str) -> None:
            start = time.perf_counter()
            try:
                async with session.get(base + path) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            latencies[path].append(time.perf_counter() - start if ok else timeout)

        async def prober() -> None:
            await asyncio.sleep(1.0)  # the batches under way first
            asked = []
            while time.perf_counter() < deadline:
                asked += [asyncio.create_task(probe(path)) for path in PROBES]
                await asyncio.sleep(PROBE_EVERY)
            await asyncio.gather(*asked)

        start = time.perf_counter()
        await asyncio.gather(prober(), *(client() for _ in range(clients)))
        return latencies, answered / (time.perf_counter() - start)


def _probe_batch(payloads: list[dict], lines: int | None, max_bytes: int) -> tuple[bytes, int]:
    """The batch the clients send under the probes, and its customers. `lines`: each
    customer's lines repeated up to that many (250 lines make 1,000 customers about 30 MB,
    under the 32 MB cap), else the payloads' own. A batch over `max_bytes` would measure only
    413s, fast: refused before the service starts."""
    size = min(len(payloads), 1000)
    customers = payloads[:size]
    if lines is not None:
        customers = [
            {**c, "transactions": [c["transactions"][i % len(c["transactions"])]
                                   for i in range(lines)]}
            for c in customers
        ]  # fmt: skip
    batch = json.dumps({"customers": customers}).encode()
    if len(batch) > max_bytes:
        raise SystemExit(
            f"bench: a batch of {size:,} customers of {lines} lines is {len(batch) / 2**20:.1f} "
            f"MB, over max_request_mb ({max_bytes / 2**20:g} MB): every call would be a 413; "
            "give fewer --probe-lines"
        )
    return batch, size


def _report_probes(
    base: str, batch: bytes, size: int, clients: int, seconds: float, lines: int | None
) -> None:
    latencies, rate = uvloop.run(_probes_under_load(base, batch, size, clients, seconds, 10.0))
    said = "; ".join(
        f"{path} p50 {_ms(values, 50)}, p99 {_ms(values, 99)}, max {_ms(values, 100)}"
        for path, values in latencies.items()
    )
    each = f" of {lines:,} lines" if lines is not None else ""
    print(
        f"probes under batch load ({clients} clients x {size:,} customers{each}, "
        f"{len(batch) / 2**20:.1f} MB, {seconds:g} s): {said}; {rate:,.0f} customers/s",
        flush=True,
    )


def _set_limit(home: Path, max_in_flight: int | None) -> ServingConfig:
    """The serving config of the scratch home (its own file, else the packaged default), with
    `max_in_flight` written into the home's own file if given."""
    scratch = Paths(home)
    if max_in_flight is not None:
        values = yaml.safe_load(scratch.config_file("serving").read_text()) or {}
        scratch.configs_dir.mkdir(exist_ok=True)
        own = scratch.configs_dir / "serving.yaml"
        own.write_text(yaml.safe_dump({**values, "max_in_flight": max_in_flight}))
    return load_config(ServingConfig, scratch.config_file("serving"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES), help="calls/s")
    parser.add_argument("--seconds", type=positive, default=10.0, help="per rate")
    parser.add_argument("--timeout", type=positive, default=10.0, help="per call, seconds")
    parser.add_argument(
        "--max-in-flight", type=int, default=None, help="override configs/serving.yaml's"
    )
    parser.add_argument(
        "--probe-seconds", type=positive, default=10.0, help="health probes under batch load"
    )
    parser.add_argument(
        "--probe-lines",
        type=int,
        default=None,
        help="lines per customer of those batches (default: the 20 of the calls above)",
    )
    args = parser.parse_args()
    if args.max_in_flight is not None and args.max_in_flight < 1:
        parser.error(f"--max-in-flight: at least 1, not {args.max_in_flight}")
    if args.probe_lines is not None and args.probe_lines < 1:
        parser.error(f"--probe-lines: at least 1, not {args.probe_lines}")
    if any(rate < 1 for rate in args.rates):
        parser.error(f"--rates: calls per second above 0, not {args.rates}")
    stop_on_sigterm()
    paths = Paths.from_env()
    _champion_cuts(paths, load_config(TrainConfig, paths.config_file("train")))
    tx, customers, as_of = _customers(paths, 1000)
    payloads = _our_payloads(tx, customers, as_of)
    _say(f"{len(payloads)} customers with {TX_PER_CUSTOMER} transactions each, as of {as_of:%F}")
    bodies = [json.dumps({"customers": [p]}).encode() for p in payloads]

    scratch = Path(tempfile.mkdtemp(prefix="bench-overload-"))
    try:
        env = _scratch_env(paths, scratch)
        settings = _set_limit(scratch, args.max_in_flight)
        probed = _probe_batch(payloads, args.probe_lines, settings.max_request_mb * 2**20)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = scratch / "serve.log"
        print(
            f"crm-ltv /score, {settings.workers} workers, max_in_flight {settings.max_in_flight} "
            f"per worker, Retry-After {settings.retry_after_seconds} s, {args.seconds:g} s a rate:",
            flush=True,
        )
        server = start_server([str(BIN / "crm-ltv"), "serve", "--port", str(port)], env, log)
        try:
            wait_ready(f"{base}/readyz", server, log)
            _report(f"{base}/score", bodies, args.rates, args.seconds, args.timeout)
            clients = settings.workers * settings.max_in_flight
            _report_probes(base, *probed, clients, args.probe_seconds, args.probe_lines)
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
