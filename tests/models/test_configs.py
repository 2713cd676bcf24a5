"""Every shipped training config loads, and every training stage starts from something that exists.

A stage's ``init_from`` is either a file in the repository or the ``last.pt`` of another
config's ``out_dir`` (the stage before it in a chain such as ``spatialnet_movenet.yaml`` ->
``spatialnet_movenet_cpu_long.yaml`` -> ``spatialnet_movenet_cpu_long2.yaml``), never a path
that nothing writes.
"""

from pathlib import Path

import pytest

from posestream.models.train import load_train_config
from posestream.models.train_temporal import load_temporal_config

ROOT = Path(__file__).resolve().parents[2]
SPATIAL = sorted((ROOT / "configs").glob("spatialnet*.yaml"))
TEMPORAL = sorted((ROOT / "configs").glob("temporalnet*.yaml"))


def test_the_configs_are_there():
    assert len(SPATIAL) >= 5 and len(TEMPORAL) >= 2


@pytest.mark.parametrize("path", SPATIAL, ids=lambda p: p.name)
def test_spatial_config_loads_and_starts_from_a_file_or_an_earlier_stage(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_train_config(path)
    stages = {str(Path(load_train_config(p).out_dir) / "last.pt"): p.name for p in SPATIAL if p != path}
    if cfg.init_from is not None:
        assert cfg.init_from in stages or Path(cfg.init_from).is_file(), cfg.init_from


@pytest.mark.parametrize("path", TEMPORAL, ids=lambda p: p.name)
def test_temporal_config_loads_with_its_spatialnet(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # ``spatialnet:`` paths are relative to the repository root
    cfg = load_temporal_config(path)
    assert cfg.spatialnet is None or (ROOT / cfg.spatialnet).is_file()
