"""Render frames of a synthetic clip with their ground truth drawn on, as one grid PNG.

Visible keypoints (visibility 2) are solid, occluded ones (1) hollow rings with thin
lines, out-of-frame ones (0) not drawn; boxes are the amodal ground-truth boxes.

    .venv/bin/python scripts/make_contact_sheet.py --seed 1 --people 5 --out docs/synthetic_contact_sheet.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from posestream.models.data.draw import draw_poses
from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig


def contact_sheet(
    clip: SyntheticClip, frames: list[int], cols: int, scale: float, boxes: bool = True
) -> np.ndarray:
    """(H, W, 3) uint8 RGB grid of ``frames``, each annotated with its ground truth."""
    tiles = []
    for t in frames:
        rgb, gt = clip.render(t)
        tile = draw_poses(rgb, gt, min_score=0.5, solid_score=1.5, draw_boxes=boxes)
        if scale != 1.0:
            tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        vis = gt.keypoints[..., 2]
        label = f"t={t}  people={len(gt)}  visible={int((vis == 2).sum())}  occluded={int((vis == 1).sum())}"
        cv2.rectangle(tile, (0, 0), (tile.shape[1], 18), (0, 0, 0), -1)
        cv2.putText(tile, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    blank = np.zeros_like(tiles[0])
    while len(tiles) % cols:
        tiles.append(blank)
    rows = [np.concatenate(tiles[i : i + cols], axis=1) for i in range(0, len(tiles), cols)]
    sheet = np.concatenate(rows, axis=0)
    return sheet


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--people", type=int, default=5)
    p.add_argument("--frames", type=int, default=200, help="clip length the tiles are spread over")
    p.add_argument("--tiles", type=int, default=9)
    p.add_argument("--cols", type=int, default=3)
    p.add_argument("--scale", type=float, default=0.6, help="tile size relative to the frame")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--static-camera", action="store_true")
    p.add_argument("--no-boxes", action="store_true")
    p.add_argument("--out", default="docs/synthetic_contact_sheet.png")
    args = p.parse_args(argv)
    config = SyntheticConfig(
        seed=args.seed,
        frames=args.frames,
        people=args.people,
        width=args.width,
        height=args.height,
        camera_motion=not args.static_camera,
    )
    clip = SyntheticClip.from_config(config)
    frames = np.linspace(0, args.frames - 1, args.tiles).round().astype(int).tolist()
    sheet = contact_sheet(clip, frames, args.cols, args.scale, boxes=not args.no_boxes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), sheet[..., ::-1]):
        print(f"could not write {out}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]}, frames {frames})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
