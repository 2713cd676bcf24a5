"""Recording benchmark figures in benchmarks/RESULTS.md.

Each benchmark script owns one section, delimited by ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->``; re-running a script replaces only its own section and keeps
everything else (other scripts' sections, hand-written analysis).
"""

from __future__ import annotations

import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def markers(name: str) -> tuple[str, str]:
    """The begin/end markers of section ``name``."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def record_section(name: str, body: str, path: Path = RESULTS) -> Path:
    """Write ``body`` (Markdown, without markers) as section ``name`` of ``path``."""
    begin, end = markers(name)
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n\nEach script owns one section.\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path


def cpu_name() -> str:
    """The CPU model for the record (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
