"""Load generator for bench/run.py: a separate process driving a signer over gRPC with grpc.aio.

Usage: python bench/loadgen.py ADDRESS SCENARIO JSON_ARGS   (prints one JSON object on stdout)

Scenarios (JSON_ARGS keys in brackets):

* ``batch``  -- SignBeaconAttestations, ``batch`` distinct keys per call, ``calls`` calls with
  ``concurrency`` in flight [keys, batch, calls, concurrency, epoch].
* ``single`` -- SignBeaconAttestation, one per call, ``in_flight`` calls outstanding, for
  ``duration_s`` after ``warmup`` calls; latency per call [keys, in_flight, duration_s, warmup, epoch].
* ``burst``  -- ``count`` SignBeaconAttestation calls (one per validator) all sent at once;
  seconds from the first request to the last signature [keys, count, epoch]. With ``batch`` set,
  the same validators go as SignBeaconAttestations calls of that size, all at once.
* ``votes``  -- CometBFT SignVote: every chain signs increasing heights one after the other, all
  chains at once, for ``duration_s`` [chains, duration_s].

Keys are the dev accounts ``dev/0 .. dev/{keys-1}``. Attestations of round r use source epoch
``epoch + r`` and target ``epoch + r + 1`` (a round = one pass over the keys), so nothing is
slashable and no key is in flight twice. Every answer is checked: failures are counted.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signer.api._proto.tendermint.privval import service_pb2_grpc as privval_grpc
from signer.api._proto.tendermint.privval import types_pb2 as privval_types
from signer.api._proto.tendermint.types import types_pb2 as tm_types
from signer.api._proto.v1 import eth2_pb2, signer_pb2, signer_pb2_grpc
from signer.config import NetworkConfig
from signer.eth2.networks import network_from_config
from signer.eth2.signing import DomainType

SUCCEEDED = 1
NETWORK = network_from_config(NetworkConfig())
_domains: dict[int, bytes] = {}


def domain(epoch: int) -> bytes:
    d = _domains.get(epoch)
    if d is None:
        d = _domains[epoch] = NETWORK.domain(DomainType.BEACON_ATTESTER, epoch)
    return d


def attestation(key: int, keys: int, seq: int, epoch: int) -> signer_pb2.SignBeaconAttestationRequest:
    """The seq-th attestation overall; its key is seq % keys, its round seq // keys."""
    source = epoch + seq // keys
    target = source + 1
    return signer_pb2.SignBeaconAttestationRequest(
        account=f"dev/{key}",
        domain=domain(target),
        data=eth2_pb2.AttestationData(
            slot=target * 32,
            committee_index=0,
            beacon_block_root=seq.to_bytes(32, "big"),
            source=eth2_pb2.Checkpoint(epoch=source, root=b"\x01" * 32),
            target=eth2_pb2.Checkpoint(epoch=target, root=b"\x02" * 32),
        ),
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
    }


async def scenario_batch(channel: grpc.aio.Channel, a: dict[str, Any]) -> dict[str, Any]:
    stub = signer_pb2_grpc.SignerStub(channel)
    keys, size, calls, concurrency, epoch = a["keys"], a["batch"], a["calls"], a["concurrency"], a["epoch"]
    failed = 0
    signed = 0
    latencies: list[float] = []
    next_call = 0

    async def worker() -> None:
        nonlocal next_call, failed, signed
        while next_call < calls:
            call = next_call
            next_call += 1
            first = call * size
            reqs = [attestation((first + i) % keys, keys, first + i, epoch) for i in range(size)]
            started = time.perf_counter()
            resp = await stub.SignBeaconAttestations(
                signer_pb2.SignBeaconAttestationsRequest(requests=reqs), timeout=60
            )
            latencies.append(time.perf_counter() - started)
            ok = sum(1 for r in resp.responses if r.state == SUCCEEDED)
            signed += ok
            failed += len(reqs) - ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "signed": signed,
        "failed": failed,
        "elapsed_s": elapsed,
        "per_s": signed / elapsed,
        **latency_summary(latencies),
    }


async def scenario_single(channel: grpc.aio.Channel, a: dict[str, Any]) -> dict[str, Any]:
    stub = signer_pb2_grpc.SignerStub(channel)
    keys, in_flight, duration, warmup, epoch = a["keys"], a["in_flight"], a["duration_s"], a["warmup"], a["epoch"]
    seq = 0
    failed = 0
    done = 0
    latencies: list[float] = []
    measuring = False
    stop_at = 0.0

    async def worker() -> None:
        nonlocal seq, failed, done
        while True:
            if measuring and time.perf_counter() >= stop_at:
                return
            n = seq
            seq += 1
            req = attestation(n % keys, keys, n, epoch)
            started = time.perf_counter()
            resp = await stub.SignBeaconAttestation(req, timeout=60)
            if measuring:
                latencies.append(time.perf_counter() - started)
                done += 1
                failed += resp.state != SUCCEEDED
            elif seq >= warmup:
                return

    await asyncio.gather(*(worker() for _ in range(in_flight)))  # warm-up
    measuring = True
    started = time.perf_counter()
    stop_at = started + duration
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    return {
        "signed": done - failed,
        "failed": failed,
        "elapsed_s": elapsed,
        "per_s": (done - failed) / elapsed,
        **latency_summary(latencies),
    }


async def scenario_burst(channel: grpc.aio.Channel, a: dict[str, Any]) -> dict[str, Any]:
    stub = signer_pb2_grpc.SignerStub(channel)
    keys, count, epoch, batch = a["keys"], a["count"], a["epoch"], a.get("batch")
    reqs = [attestation(i % keys, keys, i, epoch) for i in range(count)]
    started = time.perf_counter()
    if batch:
        calls = [
            stub.SignBeaconAttestations(
                signer_pb2.SignBeaconAttestationsRequest(requests=reqs[i : i + batch]), timeout=120
            )
            for i in range(0, count, batch)
        ]
        results = await asyncio.gather(*calls)
        states = [r.state for resp in results for r in resp.responses]
    else:
        # All queued at once, at most ``in_flight`` outstanding on the wire (as a validator client
        # bounds its concurrency; 10,000 unbounded concurrent unary calls get ~half CANCELLED by
        # grpc itself before they reach the servicer).
        gate = asyncio.Semaphore(a.get("in_flight", 1024))

        async def one(r: signer_pb2.SignBeaconAttestationRequest) -> Any:
            async with gate:
                return await stub.SignBeaconAttestation(r, timeout=120)

        answers = await asyncio.gather(*(one(r) for r in reqs), return_exceptions=True)
        states = [a.state if not isinstance(a, BaseException) else -1 for a in answers]
        errors: dict[str, int] = {}
        for answer in answers:
            if isinstance(answer, grpc.aio.AioRpcError):
                name = f"{answer.code().name}: {answer.details()}"[:120]
                errors[name] = errors.get(name, 0) + 1
    elapsed = time.perf_counter() - started
    ok = sum(1 for s in states if s == SUCCEEDED)
    out = {"signed": ok, "failed": count - ok, "elapsed_s": elapsed, "per_s": ok / elapsed}
    if not batch and errors:
        out["errors"] = errors
    return out


def vote(chain: str, height: int) -> privval_types.SignVoteRequest:
    block = tm_types.BlockID(
        hash=height.to_bytes(32, "big"),
        part_set_header=tm_types.PartSetHeader(total=1, hash=b"\x07" * 32),
    )
    v = tm_types.Vote(
        type=tm_types.SIGNED_MSG_TYPE_PREVOTE,
        height=height,
        round=0,
        block_id=block,
        validator_address=b"\x01" * 20,
        validator_index=0,
    )
    v.timestamp.seconds = 1_700_000_000 + height
    return privval_types.SignVoteRequest(vote=v, chain_id=chain)


async def scenario_votes(channel: grpc.aio.Channel, a: dict[str, Any]) -> dict[str, Any]:
    stub = privval_grpc.PrivValidatorAPIStub(channel)
    chains, duration = a["chains"], a["duration_s"]
    latencies: list[float] = []
    failed = 0
    stop_at = time.perf_counter() + duration

    async def drive(chain: str) -> None:
        nonlocal failed
        height = 1
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            resp = await stub.SignVote(vote(chain, height), timeout=60)
            latencies.append(time.perf_counter() - started)
            if resp.HasField("error") and resp.error.code:
                failed += 1
            height += 1

    started = time.perf_counter()
    await asyncio.gather(*(drive(c) for c in chains))
    elapsed = time.perf_counter() - started
    ok = len(latencies) - failed
    return {"signed": ok, "failed": failed, "elapsed_s": elapsed, "per_s": ok / elapsed, **latency_summary(latencies)}


SCENARIOS = {"batch": scenario_batch, "single": scenario_single, "burst": scenario_burst, "votes": scenario_votes}


async def main_async(address: str, scenario: str, args: dict[str, Any]) -> dict[str, Any]:
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        return await SCENARIOS[scenario](channel, args)


def main() -> int:
    address, scenario, raw = sys.argv[1], sys.argv[2], sys.argv[3]
    result = asyncio.run(main_async(address, scenario, json.loads(raw)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
