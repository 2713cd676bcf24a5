"""Fixtures shared by every test directory: the pretrained and trained weights.

``movenet_tflite`` calls the same ``fetch_movenet()`` that ``posestream weights fetch``
runs (idempotent: a cached file is only re-verified) and skips, with the reason, only
when the weights cannot be fetched. ``temporalnet_checkpoint`` is our committed
TemporalNet checkpoint. Neither imports torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def movenet_tflite() -> Path:
    """Path of the verified ``movenet.tflite`` (fetched on first use, like a user would).

    Thunder is fetched with it: the default ``PoseEstimator`` refines with it (``posestream.models.refine``).
    """
    from posestream.models import weights as W

    try:
        W.fetch_thunder()
        return W.fetch_movenet()
    except W.WeightsError as exc:
        pytest.skip(f"MoveNet weights cannot be fetched, so this test cannot run: {exc}")


@pytest.fixture(scope="session")
def temporalnet_checkpoint(movenet_tflite: Path) -> Path:
    """Path of ``weights/temporalnet_movenet.pt`` (it runs on MoveNet features, so needs those too)."""
    from posestream.models.weights import TEMPORALNET_MOVENET, checkpoint_path

    path = checkpoint_path(TEMPORALNET_MOVENET)
    if not path.is_file():
        pytest.skip(f"{path} missing; run `posestream train temporal`")
    return path


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads, then restore the count.

    Float sums depend on the thread count, and several test modules change it for the whole
    session, so a test that compares exact outputs fixes it.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
