"""Accuracy of predicted poses and tracks against ground truth, with the standard libraries.

``evaluate(gt_frames, pred_frames, config)`` scores a predicted pose sequence
(``FramePoses`` per frame, e.g. read from JSON Lines) against ground truth and returns
one JSON-serialisable dict; ``format_report`` renders it for the terminal. Three families
of numbers are computed, each by the library the community uses for it, so that our
numbers mean what readers expect:

1. **COCO keypoint AP/AR** (pycocotools ``COCOeval``, ``iouType="keypoints"``). Each frame
   is one COCO image (``image_id = frame_index``), each person one annotation.

   - Ground-truth keypoint scores are COCO visibility codes (0 absent, 1 occluded,
     2 visible) and are passed through unchanged; only ``v > 0`` keypoints enter OKS.
   - OKS scale: there is no segmentation, so the annotation ``area`` is the
     ground-truth *box* area times ``EvalConfig.area_scale`` (default 1.0). COCO itself
     uses the segment area, which is smaller than the box (for a person, very roughly
     half), so with the default our OKS is more lenient than COCO's for the same pixel
     error, and our AP reads higher than a COCO AP of the same poses would. Set
     ``area_scale`` to about 0.5 to approximate COCO's stricter scale. The same area
     drives APm/APl (medium: 32^2 to 96^2 px^2, large: above 96^2).
   - A ground-truth person with no labelled keypoint (all visibility 0) is kept with
     ``num_keypoints = 0``, which COCOeval turns into an *ignored* annotation: it is not
     a positive, and a prediction that falls on it (COCO's box-based OKS for such people)
     is neither a true nor a false positive. This is COCO's own rule, and the tracking
     metrics below apply the same rule so that all three agree.
   - Predictions: keypoint scores go into the COCO ``v`` slot (COCOeval ignores
     prediction visibilities); the person ``score`` ranks detections. A predicted person
     none of whose keypoints has a score > 0 ("empty pose") is dropped from every metric:
     it says nothing about where a person is. Real models never output one; ground truth
     used as a prediction does, for its unlabelled people, whose COCO-style (0, 0)
     keypoints would otherwise be a false person at the image origin.
   - COCOeval keeps only the ``maxDets`` highest-scoring detections per image (20 for
     keypoints). We set ``params.maxDets = [EvalConfig.max_detections]`` explicitly and
     log a warning when a frame has more predictions than that. Because
     ``COCOeval.summarize`` hard-codes ``maxDets=20`` for keypoints (and prints), the
     summary numbers are read from ``COCOeval.eval`` exactly as ``summarize`` does
     (mean over entries > -1); a test pins them to ``summarize``'s ``stats``.
   - Undefined numbers (COCO's -1, e.g. APm when no person is medium-sized) are ``None``.

2. **CLEAR MOT and identity metrics** (py-motmetrics): one ``MOTAccumulator`` over the
   frames, ``metrics.create().compute``. Objects are the labelled ground-truth people
   (ids = their ``track_id``); hypotheses are the predicted people (ids = their
   ``track_id``). The distance is ``1 - OKS`` (same OKS as above: COCO sigmas from
   ``posestream.models.skeleton.OKS_SIGMAS``, ground-truth box area, ground-truth keypoints with
   visibility > 0); pairs with ``OKS < EvalConfig.mot_oks_threshold`` cannot match.

   - Untracked predictions (``track_id < 0``, normally -1) each get a fresh id that is
     never reused: they count as detections but carry no identity, so a person covered
     only by untracked predictions scores an ID switch in every frame after the first. That is
     what an untracked output is worth to a tracking metric; rejecting the file would
     make ``eval`` useless for detector-only runs whose AP one wants.
   - Ignore rule for unlabelled people: a prediction that cannot match any labelled
     person (OKS below the gate with all of them) but reaches the gate with an
     unlabelled one (COCO's box-based OKS) is removed from the tracking metrics, as
     COCOeval ignores it. This mirrors the distractor removal of MOTChallenge's
     evaluation, with COCOeval's preference for regular over ignored ground truth.
   - ``MOTP`` is reported as the mean OKS of matched pairs (``1 -`` motmetrics' mean
     distance), so higher is better, as in the PoseTrack tables.

3. **PoseTrack per-joint MOTA** (Andriluka et al. 2018; the ``poseval`` protocol, also
   accumulated with py-motmetrics). For each of the 17 joint types separately and each
   frame: objects are the ground-truth people whose joint is labelled (visibility > 0),
   hypotheses are the predicted people whose joint has score
   ``> EvalConfig.pred_joint_min_score``; they may match when
   ``||p - g|| <= EvalConfig.pckh_threshold * head_size`` (PCKh), with the normalised
   distance ``||p - g|| / head_size`` as cost. Ids are the people's track ids.

   - COCO has no head box, so ``head_size`` is ``posestream.models.geometry.head_size_or_box``
     of the ground-truth person (ear span, else 2x eye span, else shoulder span / 1.6; when
     none of those pairs is labelled, the box height / 8, about one head height for a
     standing adult); how often the box was needed is logged.
   - Per joint: MOTA = 1 - (misses + switches + false positives) / objects, precision
     and recall as motmetrics defines them (= poseval's), MOTP = 1 - mean normalised
     distance (poseval). "Total" MOTA / MOTP / precision / recall are the means over
     joint types with at least one labelled object; switches are summed. Unlike
     poseval, a frame with ground truth but no prediction counts every labelled joint
     as missed (poseval's placeholder update counts one miss and one false positive
     per joint type there).

Frames are paired by ``frame_index``. A ground-truth frame without a prediction counts
as all misses; a prediction frame absent from the ground truth is a ``ValueError``
(usually an offset or a wrong file, which silently ignoring would hide). Width/height
must agree for each frame.

Library compatibility (NumPy 2, pandas 3), in this one place: we do not patch either
library. motmetrics 1.4.0's ``distances.iou_matrix`` calls ``np.asfarray`` (removed in
NumPy 2.0) and ``MOTAccumulator.merge_event_dataframes`` calls ``DataFrame.append``
(removed in pandas 2.0): we build our own distance matrices (OKS, PCKh) and use one
accumulator per computation with ``MetricsHost.compute``, so neither function runs;
the rest of the path (``MOTAccumulator.update``, ``events``, ``compute`` of the metrics
we ask for, scipy's assignment solver) runs warning-free on NumPy 2.4 / pandas 3.
pycocotools 2.0.11 (``COCO``, ``loadRes``, ``COCOeval`` keypoints) has no NumPy 2 issue. ``tests/tracker/test_evaluation.py`` proves the numbers on a
hand-computed MOT case and on COCOeval's own summary.

The parts, one module each: ``config`` (``EvalConfig``), ``pairing`` (frames paired,
validated and filtered, OKS of every pair: ``posestream.models.geometry.oks_matrix``),
``coco``, ``mot``, ``posetrack``, ``report`` (``format_report``) and ``evaluation``
(``evaluate``, which runs them). Everything here is torch-free (tracker/ never imports torch).
"""

from posestream.tracker.metrics.config import EvalConfig
from posestream.tracker.metrics.evaluation import evaluate
from posestream.tracker.metrics.posetrack import PART_GROUPS
from posestream.tracker.metrics.report import format_report

__all__ = ["PART_GROUPS", "EvalConfig", "evaluate", "format_report"]
