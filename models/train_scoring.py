"""``posestream train scoring``: seed 004's pose scoring net on MoveNet's own candidates.

Training pairs are (candidate pose, its real OKS): every candidate the MoveNet decoder
scores (``PoseRescorer`` seam: after grouping, before the ``min_pose_score`` filter and
NMS, at each input scale, with the estimator's flip testing), so the net sees MoveNet's
realistic errors -- duplicates, half-grouped people, background -- not perturbed ground
truth. Each candidate's target is its best OKS against the labelled people of its image
(``pose_scoring.candidate_oks``). Sources:

- synthetic clips with exact ground truth, seeds ``posestream.models.data.splits.SCORING_TRAIN``
  (every ``frame_step``-th frame; OKS scale = the box area, as the synthetic AP's
  ``EvalConfig.area_scale = 1``);
- the **train** images of the real dev set (``configs/real_dev_split.json``; never its eval
  images), each also downscaled by ``real_factors`` so the real people come in several sizes;
  OKS scale = the set's ``area``. Candidates on unlabelled people (PoseTrack ignore regions,
  boxes without keypoints) are left out rather than given a target of 0.

The candidates are cached per source in ``work_dir`` (``.npz``: keypoints and OKS, keyed by the
estimator settings), so the network pass is paid once; the MLP then trains in seconds on
the CPU. ``work_dir/last.pt`` (written every epoch) makes an interrupted run resumable:
the same command continues it. Held-out scores in the card: Spearman correlation and mean
squared error of predicted vs real OKS on held-out synthetic clips
(``splits.HELD_OUT``) and on the real dev set's eval images.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from posestream.models.data.splits import HELD_OUT, REAL_DEV_DIR, SCORING_TRAIN, real_dev_split
from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig
from posestream.models.estimator import EstimatorConfig, PoseEstimator, letterbox
from posestream.models.pose_scoring import (
    POSE_SCORING,
    PoseScoringNet,
    candidate_oks,
    pose_features,
    scoring_loss,
    spearman,
)
from posestream.models.refine import RefineConfig
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.models.weights import checkpoint_path

log = logging.getLogger(__name__)

# The real labelled dev set, next to the checkout (``../shared/data/real-dev``; never copied in).


@dataclass(frozen=True)
class TrainScoringConfig:
    """What ``train_scoring`` trains on and how long.

    Attributes:
        synthetic_clips: synthetic training clips, the first of ``SCORING_TRAIN``.
        synthetic_frames: frames per clip (100-frame clips, 5 people, 2 occluders).
        frame_step: every this many frames of a clip is used.
        real_factors: downscale factors of the real dev set's train images (1 = original).
        real_dev_dir: the real dev set's folder; its train images are skipped (with a
            warning) when it is missing.
        held_out_clips: held-out synthetic clips (``HELD_OUT``) scored for the card.
        hidden: width of the net's two hidden layers.
        epochs, batch_size, lr, weight_decay: Adam over the cached pairs.
        time_limit_s: stop training after this many seconds (the caches not counted).
        real_share: expected share of each batch drawn from the real pairs (batches are drawn
            with replacement, weighted per source); None pools all pairs alike. The real
            train images give ~250 pairs against ~5700 synthetic ones, so pooled the net
            learns mostly the synthetic people's look; raising it fits the real candidates
            more closely, at the risk of overfitting their 9 images (0.5 was tried for the
            shipped checkpoint: held-out Spearman 0.83 synthetic / 0.44 real against 0.86 /
            0.45 pooled, see its card).
        seed: torch seed of the initialisation and the batch order.
        threads: torch CPU threads.
        work_dir: caches and ``last.pt``.
        out: the checkpoint written at the end (default ``weights/pose_scoring.pt``).
    """

    synthetic_clips: int = 40
    synthetic_frames: int = 100
    frame_step: int = 5
    real_factors: tuple[float, ...] = (1.0, 0.5, 0.25)
    real_dev_dir: str = str(REAL_DEV_DIR)
    held_out_clips: int = 4
    hidden: int = 128
    epochs: int = 300
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    time_limit_s: float | None = 300.0
    real_share: float | None = None
    seed: int = 0
    threads: int = 1
    work_dir: str = "runs/pose_scoring"
    out: str = field(default_factory=lambda: str(checkpoint_path(POSE_SCORING)))

    def __post_init__(self) -> None:
        if not 1 <= self.synthetic_clips <= SCORING_TRAIN.count:
            raise ValueError(f"synthetic_clips must be 1..{SCORING_TRAIN.count}, got {self.synthetic_clips}")
        if not 1 <= self.held_out_clips <= HELD_OUT.count:
            raise ValueError(f"held_out_clips must be 1..{HELD_OUT.count}, got {self.held_out_clips}")
        if self.frame_step < 1 or self.synthetic_frames < 1:
            raise ValueError("frame_step and synthetic_frames must be >= 1")
        if any(not 0.0 < f <= 1.0 for f in self.real_factors):
            raise ValueError(f"real_factors must be in (0, 1], got {self.real_factors}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError("time_limit_s must be > 0 (or None for no limit)")
        if self.real_share is not None and not 0.0 < self.real_share < 1.0:
            raise ValueError(f"real_share must be in (0, 1) or None, got {self.real_share}")


def data_estimator_config() -> EstimatorConfig:
    """The estimator whose candidates are learned from: the default's scales, merge and flip
    testing on the CPU, without the learned score itself or Thunder refinement (refinement
    moves joints after scoring, so it plays no part in what the scorer sees)."""
    return EstimatorConfig(device="cpu", refine=RefineConfig(enabled=False))


class _Recorder:
    """A ``PoseRescorer`` that keeps every candidate it is shown and leaves the scores as they are."""

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def __call__(self, keypoints: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        self.calls.append(np.array(keypoints, np.float32))
        return scores


class CandidateCollector:
    """Every candidate the decoder scores on a frame, as ``data_estimator_config`` runs it.

    One single-scale estimator per input size with a recorder in its scoring seam (the decoder
    is not called at a scale where no centre passes its threshold, so one estimator for all
    scales could not tell whose candidates it saw).

    Args:
        weights: MoveNet file (default the verified cache).
    """

    def __init__(self, weights: str | Path | None = None) -> None:
        cfg = data_estimator_config()
        self.square = cfg.square
        self.scales = []
        for size in cfg.input_sizes:
            rec = _Recorder()
            est = PoseEstimator(replace(cfg, input_sizes=(size,)), weights, rescorer=rec)
            self.scales.append((size, est, rec))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (P, 17, 3) float32 (x, y, heat value) frame pixels, all scales."""
        out = [np.zeros((0, NUM_KEYPOINTS, 3), np.float32)]
        for size, est, rec in self.scales:
            rec.calls.clear()
            est([rgb])
            if not rec.calls:
                continue
            _, (t,) = letterbox([rgb], size, self.square)
            kp = rec.calls[0].copy()
            kp[..., :2] = t.to_frame(kp[..., :2].reshape(-1, 2)).reshape(-1, NUM_KEYPOINTS, 2)
            out.append(kp)
        return np.concatenate(out)


# ---- sources: (name, frames) with their labelled people ----------------------------------------

# One labelled frame: rgb, labelled keypoints (G, 17, 3) v-coded, OKS areas (G,), and a
# predicate over candidates (P, 17, 3) -> (P,) bool of those that may be scored.
Labelled = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def synthetic_frames(
    seed: int, frames: int, step: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Frames of synthetic clip ``seed``: rgb, GT keypoints (G, 17, 3) (x, y, v), box areas (G,)."""
    clip = SyntheticClip.from_config(SyntheticConfig(seed=seed, frames=frames, people=5, occluders=2))
    for t in range(0, frames, step):
        rgb, gt = clip.render(t)
        w = gt.boxes[:, 2] - gt.boxes[:, 0]
        h = gt.boxes[:, 3] - gt.boxes[:, 1]
        yield rgb, gt.keypoints.astype(np.float64), (w * h).astype(np.float64)


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in points])


def real_dev_frames(
    data_dir: Path, image_ids: tuple[int, ...], factors: tuple[float, ...]
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]]:
    """Real dev images ``image_ids`` at each downscale factor.

    Yields:
        name, rgb (H', W', 3) uint8, labelled keypoints (G, 17, 3) (x, y, v) and areas (G,)
        in the downscaled image, and the regions (K, 2) whose candidates are not scored
        (PoseTrack ignore polygons; boxes of people labelled without keypoints).
    """
    coco = json.loads((Path(data_dir) / "annotations.json").read_text())
    images = {im["id"]: im for im in coco["images"]}
    for image_id in image_ids:
        im = images[image_id]
        bgr = cv2.imread(str(Path(data_dir) / "images" / im["file_name"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read real dev image {im['file_name']}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        anns = [a for a in coco["annotations"] if a["image_id"] == image_id]
        for f in factors:
            size = (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f)))
            small = rgb if f == 1.0 else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            sx, sy = size[0] / rgb.shape[1], size[1] / rgb.shape[0]
            kps, areas, regions = [], [], []
            for a in anns:
                kp = np.asarray(a["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
                kp[:, 0] *= sx
                kp[:, 1] *= sy
                if a.get("num_keypoints", 0) > 0:
                    kps.append(kp)
                    areas.append(float(a["area"]) * sx * sy)
                else:
                    x, y, w, h = (float(v) for v in a["bbox"])
                    box = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]) * [sx, sy]
                    regions.append(box)
            for xs, ys in zip(im.get("ignore_regions_x", []), im.get("ignore_regions_y", []), strict=True):
                regions.append(np.stack((np.asarray(xs) * sx, np.asarray(ys) * sy), -1))
            gt = np.stack(kps) if kps else np.zeros((0, NUM_KEYPOINTS, 3))
            yield f"real_{image_id}_x{f:g}", small, gt, np.asarray(areas), regions


def scoreable(candidates: np.ndarray, regions: list[np.ndarray]) -> np.ndarray:
    """(P,) bool: candidates with at most half their joints inside any unlabelled region."""
    keep = np.ones(len(candidates), bool)
    for i, kp in enumerate(candidates):
        inside = np.zeros(NUM_KEYPOINTS, bool)
        for poly in regions:
            inside |= _inside(kp[:, :2], poly)
        keep[i] = inside.mean() <= 0.5
    return keep


# ---- caches ---------------------------------------------------------------------------------


def _fingerprint() -> str:
    cfg = data_estimator_config()
    return json.dumps(
        {
            "sizes": cfg.input_sizes, "square": cfg.square, "flip": cfg.flip, "flip_max_size": cfg.flip_max_size,
            "merge": cfg.scale_merge, "dec": asdict(cfg.decoder),
        }
    )  # fmt: skip


def _cached(path: Path, build) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001 - () -> (kp, oks)
    fp = _fingerprint()
    if path.is_file():
        with np.load(path) as z:
            if str(z["fingerprint"]) == fp:
                return z["keypoints"], z["oks"]
    kp, oks = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, keypoints=kp, oks=oks, fingerprint=np.array(fp))
    return kp, oks


def synthetic_pairs(
    seeds: range, frames: int, step: int, work_dir: Path, est: CandidateCollector | None
) -> tuple[np.ndarray, np.ndarray, CandidateCollector | None]:
    """(candidates (P, 17, 3), OKS (P,)) of synthetic clips ``seeds``, cached per clip."""
    kps, oks = [], []
    for seed in seeds:

        def build(seed: int = seed) -> tuple[np.ndarray, np.ndarray]:
            nonlocal est
            est = est or CandidateCollector()
            k_all, o_all = [], []
            for rgb, gt, areas in synthetic_frames(seed, frames, step):
                cand = est(rgb)
                k_all.append(cand)
                o_all.append(candidate_oks(cand, gt, areas))
            return np.concatenate(k_all), np.concatenate(o_all)

        k, o = _cached(work_dir / f"synthetic_{seed}_f{frames}_s{step}.npz", build)
        kps.append(k)
        oks.append(o)
        log.info("synthetic clip %d: %d candidates", seed, len(k))
    return np.concatenate(kps), np.concatenate(oks), est


def real_pairs(
    data_dir: Path,
    image_ids: tuple[int, ...],
    factors: tuple[float, ...],
    work_dir: Path,
    est: CandidateCollector | None,
) -> tuple[np.ndarray, np.ndarray, CandidateCollector | None]:
    """(candidates, OKS) of real dev images ``image_ids`` at ``factors``, cached per image and factor."""
    kps, oks = [np.zeros((0, NUM_KEYPOINTS, 3), np.float32)], [np.zeros(0, np.float32)]
    for name, rgb, gt, areas, regions in real_dev_frames(data_dir, image_ids, factors):

        def build(rgb=rgb, gt=gt, areas=areas, regions=regions) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
            nonlocal est
            est = est or CandidateCollector()
            cand = est(rgb)
            cand = cand[scoreable(cand, regions)]
            return cand, candidate_oks(cand, gt, areas)

        k, o = _cached(work_dir / f"{name}.npz", build)
        kps.append(k)
        oks.append(o)
    return np.concatenate(kps), np.concatenate(oks), est


# ---- training -------------------------------------------------------------------------------


def held_out_scores(net: PoseScoringNet, keypoints: np.ndarray, oks: np.ndarray) -> dict[str, float]:
    """Spearman correlation, mean squared error and count of predicted vs real OKS."""
    with torch.inference_mode():
        pred = net.eval()(torch.from_numpy(pose_features(keypoints))).clamp(0, 1).numpy()
    naive = keypoints[..., 2].mean(axis=1)
    return {
        "spearman": spearman(pred, oks),
        "spearman_mean_heat": spearman(naive, oks),
        "mse": float(np.mean((pred - oks) ** 2)),
        "poses": int(len(oks)),
    }


def train_scoring(cfg: TrainScoringConfig) -> tuple[Path, dict]:
    """Build (or reuse) the caches, train (or resume), write ``cfg.out`` with its card."""
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.work_dir)
    t0 = time.perf_counter()
    est: CandidateCollector | None = None
    seeds = SCORING_TRAIN.seeds(cfg.synthetic_clips)
    syn_k, syn_o, est = synthetic_pairs(seeds, cfg.synthetic_frames, cfg.frame_step, work, est)
    split = real_dev_split()
    data_dir = Path(cfg.real_dev_dir)
    have_real = (data_dir / "annotations.json").is_file()
    if not have_real:
        log.warning("real dev set not found at %s: training on synthetic clips only", data_dir)
    real_k, real_o, est = (
        real_pairs(data_dir, split.train, cfg.real_factors, work, est)
        if have_real
        else (np.zeros((0, NUM_KEYPOINTS, 3), np.float32), np.zeros(0, np.float32), est)
    )
    ho_seeds = HELD_OUT.seeds(cfg.held_out_clips)
    ho_k, ho_o, est = synthetic_pairs(ho_seeds, cfg.synthetic_frames, cfg.frame_step, work, est)
    ev_k, ev_o, est = (
        real_pairs(data_dir, split.eval, cfg.real_factors, work, est)
        if have_real
        else (np.zeros((0, NUM_KEYPOINTS, 3), np.float32), np.zeros(0, np.float32), est)
    )
    cache_s = time.perf_counter() - t0

    x = torch.from_numpy(pose_features(np.concatenate((syn_k, real_k))))
    y = torch.from_numpy(np.concatenate((syn_o, real_o)).astype(np.float32))
    sample_weight = None
    if cfg.real_share is not None and len(real_o) and len(syn_o):
        sample_weight = torch.cat(
            (
                torch.full((len(syn_o),), (1.0 - cfg.real_share) / len(syn_o), dtype=torch.float64),
                torch.full((len(real_o),), cfg.real_share / len(real_o), dtype=torch.float64),
            )
        )
    torch.manual_seed(cfg.seed)
    net = PoseScoringNet(cfg.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, trained_s, curve = 0, 0.0, []
    last = work / "last.pt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        if state["config"] == _resume_key(cfg):
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["opt"])
            gen.set_state(state["gen"])
            start, trained_s, curve = int(state["epoch"]), float(state["trained_s"]), list(state["curve"])
            log.info("resumed from %s at epoch %d", last, start)
        else:
            log.info("%s is from another configuration: starting over", last)
    epoch = start
    for epoch in range(start, cfg.epochs):
        if cfg.time_limit_s is not None and trained_s >= cfg.time_limit_s:
            log.info("time limit %.0f s reached after %d epochs", cfg.time_limit_s, epoch)
            break
        e0 = time.perf_counter()
        net.train()
        order = (
            torch.multinomial(sample_weight, len(x), replacement=True, generator=gen)
            if sample_weight is not None
            else torch.randperm(len(x), generator=gen)
        )
        total = 0.0
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = scoring_loss(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        trained_s += time.perf_counter() - e0
        curve.append([epoch + 1, round(trained_s, 2), total / len(x)])
        work.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "config": _resume_key(cfg), "net": net.state_dict(), "opt": opt.state_dict(),
                "gen": gen.get_state(), "epoch": epoch + 1, "trained_s": trained_s, "curve": curve,
            },
            last,
        )  # fmt: skip
    else:
        epoch = cfg.epochs
    card = {
        "what": "seed 004 pose scoring net: 74-d heat value + shape feature -> predicted OKS",
        "estimator": json.loads(_fingerprint()),
        "train_synthetic_seeds": f"{seeds.start}..{seeds.stop - 1}",
        "train_real_dev_images": list(split.train) if have_real else [],
        "real_factors": list(cfg.real_factors),
        "train_pairs": {"synthetic": int(len(syn_o)), "real": int(len(real_o))},
        "epochs_done": int(epoch),
        "cache_seconds": round(cache_s, 1),
        "train_seconds": round(trained_s, 1),
        "final_loss": curve[-1][2] if curve else None,
        "curve": curve[:: max(1, len(curve) // 10)] + curve[-1:],
        "held_out_synthetic": {
            "seeds": f"{ho_seeds.start}..{ho_seeds.stop - 1}",
            **held_out_scores(net, ho_k, ho_o),
        },
        "held_out_real_dev_eval": held_out_scores(net, ev_k, ev_o) if len(ev_o) else None,
        "config": _plain(asdict(cfg)),
        "hardware": f"CPU, {cfg.threads} torch thread(s)",
    }
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": {"hidden": cfg.hidden}, "state_dict": net.state_dict(), "card": card}, out)
    return out, card


def _resume_key(cfg: TrainScoringConfig) -> dict:
    """The fields a resumed run must share with the one it continues (more epochs, another time
    limit, output path or thread count continue it)."""
    key = _plain(asdict(cfg))
    for k in ("epochs", "time_limit_s", "out", "threads"):
        key.pop(k)
    return key


def _plain(d: dict) -> dict:
    """A config dict with tuples as lists (what a ``weights_only`` load gives back)."""
    return json.loads(json.dumps(d))


def scoring_config(overrides: dict) -> TrainScoringConfig:
    """``TrainScoringConfig`` with the given fields replaced (CLI overrides)."""
    return replace(TrainScoringConfig(), **overrides)
