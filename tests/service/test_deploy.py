"""Static checks of Dockerfile and docker-compose.yml (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from posestream.service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_compose_services_healthchecks_and_dependencies(compose: dict) -> None:
    services = compose["services"]
    assert {"redis", "gateway", "worker"} <= set(services)
    redis = services["redis"]
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    assert (
        "--appendonly" in redis["command"]
        and redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    )
    assert any(v.endswith(":/data") for v in redis["volumes"])
    gateway = services["gateway"]
    assert gateway["build"]["target"] == "gateway"
    assert "healthcheck" in gateway["healthcheck"]["test"][-1] or "/healthz" in " ".join(
        gateway["healthcheck"]["test"]
    )
    for name in ("gateway", "worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_gateway_healthcheck_probes_healthz() -> None:
    script = (ROOT / "docker" / "healthcheck.py").read_text()
    assert "/healthz" in script


def test_worker_reserves_an_nvidia_gpu_and_scales(compose: dict) -> None:
    worker = compose["services"]["worker"]
    assert worker["build"]["target"] == "worker"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    # --scale worker=N needs no fixed name and no host port.
    assert "container_name" not in worker and "ports" not in worker


def test_worker_serves_metrics_and_its_healthcheck_reads_them(compose: dict, dockerfile: str) -> None:
    worker = compose["services"]["worker"]
    port = worker["environment"]["POSESTREAM_WORKER_METRICS_PORT"]
    assert int(port) > 0 and port in [str(p) for p in worker["expose"]]
    # Loopback by default (a worker on a host is not scraped from outside); compose opens it.
    assert Settings.model_fields["worker_metrics_addr"].default == "127.0.0.1"
    assert worker["environment"]["POSESTREAM_WORKER_METRICS_ADDR"] == "0.0.0.0"
    assert worker["healthcheck"]["test"][-2:] == ["/app/healthcheck.py", "worker"]
    body = dockerfile.split("AS worker\n", 1)[1]
    assert "COPY docker/healthcheck.py /app/healthcheck.py" in body and f"EXPOSE {port}" in body
    script = (ROOT / "docker" / "healthcheck.py").read_text()
    assert "posestream_worker_last_loop_timestamp_seconds" in script and "9101" in script


def test_compose_environment_matches_the_settings_class(compose: dict) -> None:
    fields = set(Settings.model_fields)
    seen = 0
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        for key in env:
            if key.startswith("POSESTREAM_"):
                seen += 1
                assert key[len("POSESTREAM_") :].lower() in fields, f"{name}: {key} is not a Settings field"
    assert seen >= 5
    assert compose["services"]["gateway"]["environment"]["POSESTREAM_REDIS_URL"].startswith("redis://redis:")
    Settings(
        **{  # the values parse too
            k[len("POSESTREAM_") :].lower(): v
            for k, v in compose["services"]["worker"]["environment"].items()
        }
    )


def test_dockerfile_stages_user_and_weights(dockerfile: str) -> None:
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, flags=re.M | re.I)
    assert {"gateway", "worker"} <= set(stages) and len(stages) >= 4  # multi-stage
    # Each final image runs as the non-root user.
    for stage in ("gateway", "worker"):
        body = dockerfile.split(f"AS {stage}\n", 1)[1].split("\nFROM ", 1)[0]
        assert re.search(r"^USER\s+posestream", body, flags=re.M), stage
    worker = dockerfile.split("AS worker\n", 1)[1]
    assert re.search(r"^RUN\s+posestream weights fetch", worker, flags=re.M)
    assert "download.pytorch.org/whl/cu" in dockerfile  # CUDA build of torch for the worker
    gateway_build = dockerfile.split("AS gateway-build\n", 1)[1].split("\nFROM ", 1)[0]
    assert "torch" not in (ROOT / "docker" / "requirements-gateway.txt").read_text().split("no torch")[1]
    assert "--no-deps" in gateway_build


def test_dockerignore_keeps_local_state_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in lines and ".git" in lines
