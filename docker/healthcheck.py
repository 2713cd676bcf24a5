"""Container health check for the gateway: exit 0 when GET /healthz answers 200 (stdlib only)."""

import os
import sys
import urllib.request

port = os.environ.get("POSESTREAM_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:
    sys.exit(1)
