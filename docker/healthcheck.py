"""Container health checks (stdlib only): exit 0 when healthy, 1 otherwise.

    python healthcheck.py           the gateway: GET /healthz answers 200
                                    (port POSESTREAM_PORT, default 8000)
    python healthcheck.py worker    a worker: GET /metrics answers 200 (port
                                    POSESTREAM_WORKER_METRICS_PORT, default 9101) and its loop
                                    went round in the last POSESTREAM_HEALTH_MAX_AGE_S seconds
                                    (default 60), so a stuck worker turns unhealthy
"""

import os
import sys
import time
import urllib.request

_LOOP = "posestream_worker_last_loop_timestamp_seconds"


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.read().decode() if response.status == 200 else None
    except Exception:
        return None


def gateway() -> bool:
    return _get(f"http://127.0.0.1:{os.environ.get('POSESTREAM_PORT', '8000')}/healthz") is not None


def worker() -> bool:
    text = _get(f"http://127.0.0.1:{os.environ.get('POSESTREAM_WORKER_METRICS_PORT', '9101')}/metrics")
    if text is None:
        return False
    max_age = float(os.environ.get("POSESTREAM_HEALTH_MAX_AGE_S", "60"))
    for line in text.splitlines():
        if line.startswith(_LOOP + " "):
            return time.time() - float(line.split()[1]) < max_age
    return False


if __name__ == "__main__":
    sys.exit(0 if (worker() if sys.argv[1:] == ["worker"] else gateway()) else 1)
