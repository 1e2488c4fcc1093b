"""Every benchmark script and the soak, run at a tiny size against the session's moto
server, so that they cannot rot. Their figures are not checked here (speed goals are read
from bench/results, never asserted); what they assert about correctness still holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import (
    big_upload,
    checkpoints,
    cold_import,
    cost,
    fanout,
    fanout_instances,
    multipart,
    soak,
    streams,
    throughput,
)
from bench.common import Endpoint

from transflow.cli.local import LocalAws

pytestmark = pytest.mark.integration


@pytest.fixture
def ep(aws: LocalAws) -> Endpoint:
    return Endpoint(aws.endpoint_url)


def _written(out: Path, name: str) -> dict[str, object]:
    assert (out / f"{name}.md").read_text(encoding="utf-8").startswith("# ")
    data: dict[str, object] = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    assert "machine" in data
    return data


def test_throughput(ep: Endpoint, tmp_path: Path) -> None:
    data = throughput.run(ep, jobs=10, threads=2, records=5, out=tmp_path, quiet=True)
    assert _written(tmp_path, "throughput")["ratio_to_ceiling"] == data["ratio_to_ceiling"]


def test_throughput_with_a_backlog(ep: Endpoint, tmp_path: Path) -> None:
    # Fed no faster than drained (at most 5 queued): every job still runs, worker included.
    data = throughput.run(
        ep, jobs=12, threads=2, records=5, worker=True, backlog=5, out=tmp_path, quiet=True
    )
    assert data["sizes"]["backlog"] == 5
    assert data["transflow"]["jobs"] == data["worker"]["jobs"] == data["ceiling"]["jobs"] == 12


def test_cost(ep: Endpoint, tmp_path: Path) -> None:
    data = cost.run(
        ep, uploads=2, baseline_uploads=1, wave=1, threads=2, hub_wait=1, out=tmp_path, quiet=True
    )
    assert data["transflow"]["completed"] == 2
    assert data["transflow"]["saw_done"] == 2
    _written(tmp_path, "cost")


def test_cost_client_axis(tmp_path: Path) -> None:
    # One size, one round, in a child process with its own endpoint: the axis and report.
    data = cost.run_clients(clients=(1,), rounds=1, uploads=1, threads=2, out=tmp_path, quiet=True)
    (run,) = data["runs"]["this:1"]
    assert run["completed"] == run["saw_done"] == run["uploads"] == 2  # twice the clients
    assert run["bridge_s3_per_file"] == 1.0  # a one-file upload: its HeadObject, no listing
    _written(tmp_path, "cost_clients")


def test_checkpoints(ep: Endpoint, tmp_path: Path) -> None:
    data = checkpoints.run(ep, jobs=2, step_seconds=0.0, output_bytes=16, out=tmp_path, quiet=True)
    on, off = data["killed"]
    assert on["steps_run_again"] == ["package"]  # only the unfinished step
    assert off["redone_steps"] == 4
    assert data["put_per_job"] == 3
    _written(tmp_path, "checkpoints")


def test_big_upload(ep: Endpoint, tmp_path: Path) -> None:
    data = big_upload.run(
        ep, files=12, batch=6, threads=2, process=True, hub_wait=1, out=tmp_path, quiet=True
    )
    assert data["jobs_sent"] == 1
    _written(tmp_path, "big_upload")


def test_multipart(ep: Endpoint, tmp_path: Path) -> None:
    mib = 1024 * 1024
    data = multipart.run(ep, size=21 * mib, part_size=5 * mib, parallel=2, out=tmp_path, quiet=True)
    assert data["post"]["bytes_resent"] == data["multipart"]["bytes_resent"] == 0
    # Started over: everything sent before the cut is sent again.
    assert data["post_interrupted"]["bytes_resent"] >= 10 * mib
    resumed = data["multipart_interrupted"]
    assert resumed["bytes_resent"] < 2 * 5 * mib  # at most the two parts in flight
    assert data["multipart_interrupted_mid_part"]["bytes_resent"] < 2 * 5 * mib
    _written(tmp_path, "multipart")


def test_fanout(ep: Endpoint, tmp_path: Path) -> None:
    data = fanout.run(
        ep, subscribers=6, channels=2, events=4, interval=0.05, hub_wait=1, out=tmp_path, quiet=True
    )
    assert data["delivered"] == data["expected"] == 24
    _written(tmp_path, "fanout")


def test_streams(tmp_path: Path) -> None:
    data = streams.run([40], channels=4, events=4, idle=0.4, out=tmp_path, quiet=True)
    (row,) = data["rows"]
    assert row["subscribers"] == row["opened"] == 40
    assert row["delivered"] == row["expected"] == 160
    _written(tmp_path, "streams")


def test_fanout_instances(ep: Endpoint, tmp_path: Path) -> None:
    data = fanout_instances.run(
        ep,
        instances=(2,),  # two hubs: the path of one and of several
        subscribers=6,
        channels=2,
        events=4,
        interval=0.05,
        timeout=30,
        out=tmp_path,
        quiet=True,
    )
    for run in data["runs"]:
        assert run["delivered"] == run["expected"] == 24
        assert run["subscribers_complete"] == 6
        assert run["publisher_sns"]["PublishBatch"] >= 1
        assert run["hubs_sns"]["Subscribe"] == run["instances"]
    _written(tmp_path, "fanout_instances")


def test_fanout_instances_with_entry_failures(ep: Endpoint, tmp_path: Path) -> None:
    # One PublishBatch entry in 3 fails (transient): each is sent again, after its
    # successors, and still reaches every subscriber.
    data = fanout_instances.run(
        ep,
        instances=(2,),
        subscribers=6,
        channels=2,
        events=4,
        interval=0.05,
        timeout=30,
        entry_failure_every=3,
        out=tmp_path,
        quiet=True,
    )
    for run in data["runs"]:
        assert run["entry_failures_injected"] >= 2
        assert run["entries_published"] == 8 + run["entry_failures_injected"]
        assert run["delivered"] == run["expected"] == 24
        assert run["delivered_percent"] == 100.0
        assert run["duplicates"] == 0
        assert run["subscribers_complete"] == 6
    _written(tmp_path, "fanout_instances_entry_failures")


def test_soak(ep: Endpoint, tmp_path: Path) -> None:
    # The script's paths (a worker crash, a job outliving its visibility, the invariants),
    # without random faults: their timing is for `make soak`, not for a test that must not
    # flake. Visibility 2 s, not 1: the worker's lease check (stop rather than complete when
    # SQS has not confirmed the lease in time) needs more than a third of a second of slack
    # for a heartbeat on a loaded machine.
    data, failures = soak.run(
        ep, seconds=1.5, rate=2, fault_rate=0.0, visibility=2, out=tmp_path, quiet=True
    )
    assert failures == []
    assert data["worker_crashed"] == "worker-0"
    _written(tmp_path, "soak")


def test_cold_import(tmp_path: Path) -> None:
    # Two handlers, two rounds: the probe, the interleaving and the report, not the figures.
    names = [*cold_import.TARGETED, *(n for n in cold_import.HANDLERS if ", then " in n)]
    handlers = {name: cold_import.HANDLERS[name] for name in names}
    data = cold_import.run(rounds=2, handlers=handlers, out=tmp_path, quiet=True)
    assert set(data["handlers"]) == set(names)
    for figures in data["handlers"].values():
        assert figures["median_ms_over_boto3"] > 0
        assert figures["p90_ms_over_boto3"] >= figures["median_ms_over_boto3"]
    _written(tmp_path, "cold_import")
