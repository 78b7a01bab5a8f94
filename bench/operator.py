"""Benchmark: the operator under many RewardModelUpdates, against the stand-in API server.

    python bench/operator.py                  # 200 updates (about a minute)
    python bench/operator.py --updates 50     # quicker

Starts the stand-in API server (tests/support/kube_emulator.py) in this process and the real
operator (`rewardops operator`) as a subprocess pointed at it by a kubeconfig, waits for the
operator's liveness endpoint, then creates the updates one after another (spread over ten
serving Deployments) and measures, per update, the time from its create request to the create
request of its training Job, both as the API server saw them. Prints p50/p99/max, the
operator's resident memory (now and peak), and the ratio of the p50 against a single update
on an idle operator (the baseline: how much the latency grows under load).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.kube_emulator import RunningCluster, running_cluster  # noqa: E402
from tests.support.s3server import free_port  # noqa: E402

NS = "bench"
API = f"/apis/rewardops.dev/v1alpha1/namespaces/{NS}/rewardmodelupdates"
DEPLOYMENTS = 10


def prepare(cluster: RunningCluster) -> None:
    cluster.create("/api/v1/namespaces", {"metadata": {"name": NS}})
    crd = yaml.safe_load((ROOT / "crds" / "rewardops.dev_rewardmodelupdates.yaml").read_text())
    cluster.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    for index in range(DEPLOYMENTS):
        labels = {"app": f"scorer-{index}"}
        container = {
            "name": "scorer",
            "image": "trainer:bench",
            "env": [{"name": "REWARD_MODEL_URI", "value": "s3://models/served/model"}],
        }
        cluster.create(
            f"/apis/apps/v1/namespaces/{NS}/deployments",
            {
                "metadata": {"name": f"scorer-{index}", "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [container]},
                    },
                },
            },
        )


def update(name: str, deployment: str) -> dict[str, object]:
    return {
        "apiVersion": "rewardops.dev/v1alpha1",
        "kind": "RewardModelUpdate",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "serving": {"deployment": deployment},
            "telemetry": {"uri": "s3://telemetry/prod", "lookback": "1d"},
            "output": {"uri": "s3://runs/bench"},
            "training": {"gpus": 1},
        },
    }


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the operator exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the operator's liveness endpoint never answered")


def measure(count: int, workdir: Path) -> tuple[list[float], tuple[int, int]]:
    """Latencies (seconds) from update create to Job create, and the operator's memory."""
    with running_cluster() as cluster:
        prepare(cluster)
        kubeconfig = cluster.write_kubeconfig(workdir / f"kubeconfig-{count}", NS)
        port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "REWARDOPS_STORAGE_ENDPOINT": "127.0.0.1:9",
            "REWARDOPS_POLL_SECONDS": "30",
        }
        env.pop("KUBERNETES_SERVICE_HOST", None)
        command = [
            sys.executable,
            "-c",
            "from rewardops_operator.cli import main; main()",
            "operator",
            "--namespace",
            NS,
            "--liveness",
            f"http://127.0.0.1:{port}/healthz",
            "--metrics-port",
            "0",
        ]
        log = (workdir / f"operator-{count}.log").open("wb")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", process)
            for index in range(count):
                cluster.create(API, update(f"update-{index:04d}", f"scorer-{index % DEPLOYMENTS}"))
            deadline = time.monotonic() + 300
            while True:
                creates = cluster.call(
                    lambda: list(
                        zip(cluster.emulator.creates, cluster.emulator.create_times, strict=True)
                    )
                )
                jobs = {what.split("/")[-1]: at for what, at in creates if what.startswith("jobs ")}
                if len(jobs) >= count or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            memory = rss_kib(process.pid)
        finally:
            process.terminate()
            process.wait(30)
            log.close()
    updates = {
        what.split("/")[-1]: at for what, at in creates if what.startswith("rewardmodelupdates ")
    }
    latencies = []
    for name, created in updates.items():
        job = next((at for job, at in jobs.items() if job.startswith(f"{name}-g")), None)
        if job is None:
            raise RuntimeError(f"no Job was created for {name} (see {workdir}/operator-*.log)")
        latencies.append(job - created)
    return latencies, memory


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rewardops-bench-") as tmp:
        workdir = Path(tmp)
        baseline, _ = measure(1, workdir)
        latencies, (rss, peak) = measure(args.updates, workdir)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    result = {
        "updates": args.updates,
        "create_to_job_p50_ms": round(p50 * 1000, 1),
        "create_to_job_p99_ms": round(p99 * 1000, 1),
        "create_to_job_max_ms": round(max(latencies) * 1000, 1),
        "create_to_job_mean_ms": round(statistics.mean(latencies) * 1000, 1),
        "baseline_single_update_ms": round(baseline[0] * 1000, 1),
        "p50_vs_single_update_ratio": round(p50 / baseline[0], 2),
        "operator_rss_mib": round(rss / 1024, 1),
        "operator_peak_rss_mib": round(peak / 1024, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
