"""Loading trained networks for inference: the device choice and the SpatialNet checkpoint loader.

Inference (``posestream.models.spatial_estimator``, the worker, the benchmarks) imports
these from here, never from the training code (``posestream.models.train``), which uses
them too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import TypeAdapter

from posestream.models.pose_prior import PosePrior
from posestream.models.spatialnet import SpatialNet, SpatialNetConfig

__all__ = ["load_spatialnet", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other name as ``torch.device`` reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_spatialnet(path: str | Path, device: str | torch.device = "cpu") -> SpatialNet:
    """A SpatialNet from a checkpoint or exported weights file (``{"config", "model"}``, and
    ``"pose_prior"`` when one was fitted: ``posestream.models.train.export_weights``), in eval mode
    on ``device``."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    config = TypeAdapter(SpatialNetConfig).validate_python(ckpt["config"])
    net = SpatialNet(config)
    net.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    if "pose_prior" in ckpt:
        net.pose_prior = PosePrior.from_dict(
            {k: v.double().cpu().numpy() for k, v in ckpt["pose_prior"].items()}
        )
    return net.to(device).eval()
