"""A Gaussian prior over body shape: where a person's unsure joints should be, given the rest.

Not from the seeds, but in their spirit: seed 004 regresses every keypoint of a person and lets
the heatmaps refine those positions where they are confident, so a joint the heatmaps miss
still lands where the body says it must be. SpatialNet has no regression head; its decoder's
stand-in (``posestream.models.decode.complete_with_prior``) is the conditional mean of a Gaussian shape
model (as in active shape models) fitted on the labelled poses of the training data. Occluded
ankles, knees and wrists, whose heatmaps are weakest, gain most.

Shape space: a pose's 17 (x, y) minus their mean, divided by their RMS distance from that mean
(translation and scale removed, no rotation: people are upright), flattened to 34 numbers
(x0, y0, x1, y1, ...). ``PosePrior.complete`` works in any pixel frame: it fits the scale and
translation that map the mean shape's reliable joints onto the person's (least squares), brings
those joints into shape space with them, and takes the Gaussian's conditional mean of the other
joints given them, mapped back.

Pure numpy, so the tracker side could use it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posestream.models.skeleton import NUM_KEYPOINTS

SHAPE_DIM = 2 * NUM_KEYPOINTS


def normalise_shapes(xy: np.ndarray) -> np.ndarray:
    """Poses in shape space.

    Args:
        xy: (N, 17, 2) joint positions (any pixel frame).
    Returns:
        (N, 34): each pose centred on its joints' mean and divided by their RMS distance from it.
    """
    centred = xy - xy.mean(axis=1, keepdims=True)
    rms = np.sqrt((centred**2).sum(axis=-1).mean(axis=1))
    return (centred / np.maximum(rms, 1e-9)[:, None, None]).reshape(len(xy), SHAPE_DIM)


@dataclass(frozen=True, eq=False)
class PosePrior:
    """Gaussian over normalised body shapes (``normalise_shapes``).

    Attributes:
        mean: (34,) mean shape, (x, y) per joint in COCO order.
        cov: (34, 34) covariance, symmetric positive definite.
    """

    mean: np.ndarray
    cov: np.ndarray

    def __post_init__(self) -> None:
        mean, cov = np.array(self.mean, np.float64), np.array(self.cov, np.float64)  # own copies
        if mean.shape != (SHAPE_DIM,) or cov.shape != (SHAPE_DIM, SHAPE_DIM):
            raise ValueError(
                f"a pose prior needs a ({SHAPE_DIM},) mean and ({SHAPE_DIM}, {SHAPE_DIM}) covariance"
            )
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()) or not np.allclose(cov, cov.T, atol=1e-8):
            raise ValueError("a pose prior's mean and covariance must be finite and the covariance symmetric")
        mean.flags.writeable = cov.flags.writeable = False  # frozen all the way down
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)

    def to_dict(self) -> dict[str, list]:
        """JSON-able form (``from_dict`` reads it back)."""
        return {"mean": self.mean.tolist(), "cov": self.cov.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> PosePrior:
        """The prior from ``to_dict``'s form (or any mapping of array-likes ``mean``, ``cov``)."""
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["cov"], np.float64))

    def complete(self, xy: np.ndarray, reliable: np.ndarray, noise: float) -> np.ndarray | None:
        """The person's unreliable joints at the prior's conditional mean given its reliable ones.

        Args:
            xy: (17, 2) joint positions (any pixel frame; only the reliable ones are read).
            reliable: (17,) bool, the joints to condition on (at least two, not all at one point).
            noise: standard deviation (pixels of ``xy``) of the reliable joints' positions:
                raising it trusts them less and pulls the completion towards the mean shape.
        Returns:
            (17, 2): the reliable joints as given, the others completed; None when the reliable
            joints fix no positive scale (fewer than two, all at one point, or mirrored against
            the shape so badly that the best scale is not positive).
        """
        reliable = np.asarray(reliable, bool)
        if reliable.sum() < 2:
            return None
        if reliable.all():
            return np.asarray(xy, np.float64).copy()
        obs = np.repeat(reliable, 2)
        z = np.asarray(xy, np.float64)[reliable]
        a = self.mean.reshape(NUM_KEYPOINTS, 2)[reliable]
        da, dz = a - a.mean(axis=0), z - z.mean(axis=0)
        scale = float((da * dz).sum() / max(float((da**2).sum()), 1e-12))
        if not scale > 1e-9:
            return None
        shift = z.mean(axis=0) - scale * a.mean(axis=0)
        seen = ((z - shift) / scale).reshape(-1)
        s_oo = self.cov[np.ix_(obs, obs)] + (noise / scale) ** 2 * np.eye(int(obs.sum()))
        hidden = self.mean[~obs] + self.cov[np.ix_(~obs, obs)] @ np.linalg.solve(s_oo, seen - self.mean[obs])
        full = np.empty(SHAPE_DIM)
        full[obs], full[~obs] = seen, hidden
        out = scale * full.reshape(NUM_KEYPOINTS, 2) + shift
        out[reliable] = np.asarray(xy, np.float64)[reliable]
        return out


def fit_pose_prior(keypoints: np.ndarray, ridge: float = 1e-6) -> PosePrior:
    """Fit the Gaussian on the fully labelled poses among ``keypoints``.

    Args:
        keypoints: (N, 17, 3) poses (x, y, visibility); only poses with all 17 joints labelled
            (visible or occluded, ``visibility > 0``) are used.
        ridge: added to the covariance's diagonal (shape units), keeping it invertible.
    Returns:
        the prior.
    """
    kp = np.asarray(keypoints, np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    whole = kp[(kp[..., 2] > 0).all(axis=1)]
    if len(whole) < SHAPE_DIM + 1:
        raise ValueError(
            f"fitting a pose prior needs at least {SHAPE_DIM + 1} fully labelled poses, got {len(whole)}"
        )
    shapes = normalise_shapes(whole[..., :2])
    cov = np.cov(shapes.T) + ridge * np.eye(SHAPE_DIM)
    return PosePrior(shapes.mean(axis=0), (cov + cov.T) / 2)
