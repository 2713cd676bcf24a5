"""Writing a synthetic clip to files: an H.264 video and its ground truth as JSON Lines."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from posestream.models.data.synthetic.render import SyntheticClip
from posestream.models.data.synthetic.specs import SyntheticConfig
from posestream.models.poses import dumps_frame

log = logging.getLogger(__name__)


def write_synthetic_clip(out_dir: Path, config: SyntheticConfig, progress: bool = False) -> tuple[Path, Path]:
    """Render ``config``'s clip to ``out_dir/video.mp4`` (H.264) and ``out_dir/gt.jsonl``.

    The JSON Lines file holds one ``FramePoses`` per frame (also frames with nobody in
    them), with visibility as the keypoint score. Returns ``(video_path, gt_path)``.
    """
    from posestream.models.data.video import VideoWriter  # PyAV loads only when a clip is written to a file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video_path, gt_path = out_dir / "video.mp4", out_dir / "gt.jsonl"
    clip = SyntheticClip.from_config(config)
    with (
        VideoWriter(video_path, config.width, config.height, config.fps, crf=config.crf) as writer,
        open(gt_path, "w", encoding="utf-8") as gt,
    ):
        for t in tqdm(range(config.frames), desc="synth", unit="frame", disable=not progress):
            rgb, poses = clip.render(t)
            writer.write(rgb)
            gt.write(dumps_frame(poses) + "\n")
    log.info("wrote %s and %s (%d frames, seed %d)", video_path, gt_path, config.frames, config.seed)
    return video_path, gt_path
