"""One online tracking step: associate a frame's detections with the tracks, run the lifecycle.

``step(state, poses, config) -> (new_state, poses with track ids)`` is a pure function: it reads
its inputs (all treated as immutable; the state's arrays are read-only) and returns a
new state, so the same state and detections always give the same result, also after
the state went through ``to_bytes`` / ``from_bytes`` or a state store.

Per frame (t = ``state.frame_index``), in this order, each stage a function of its own:

1. **Association** (``_associate``, seed 000 Eq. 8): every active track (confirmed or
   tentative) against every detection with the preset's ``combined_cost`` (gated per term),
   solved by ``posestream.tracker.assignment.assign``. Detections of any score may continue
   a track.
2. **Re-identification** (``_reidentify``) by Human Embedding: the detections left over with
   score >= ``min_det_score`` against the active tracks left over and the gallery of lost
   tracks, by Psi_HE alone, gated at ``reid_max_distance``. A track match is added to the
   matches: this rescues active tracks whose motion cue failed (e.g. after a few occluded
   frames TIE/OKS compare stale positions). A gallery match is to revive the lost track
   with its old id (a person who was fully occluded or left the frame; done in stage 5).
   Skipped when the detections carry no HE.
3. **Update** (``_update``): matched tracks count the hit; a tentative track with ``n_init``
   hits is confirmed. Their HE becomes the re-normalised moving average
   ``m * old + (1 - m) * new`` with ``1 - m = (1 - min(embedding_momentum, hits / (hits + 1)))
   * visible`` (a running mean while the track is young, each detection weighted by the
   fraction of its joints above ``keypoint_threshold``). Before a confirmed track is given
   a new id, and for ``reid_window`` frames after that, its HE is compared once more with
   the gallery (``reid_max_distance``): a person who came back looking unlike their last
   appearance in the first frames (re-emerging half hidden) is recognised once several
   frames of appearance are averaged, and takes the old id back (a new id already shown is
   then retired, never reused). Then the newly confirmed tracks without an id get one, in
   row order.
4. **Misses** (``_misses``): an unmatched tentative track is dropped. A confirmed one stays
   active for up to ``max_missed`` unmatched frames and is then lost: it moves to the
   gallery (if it has an HE), which keeps at most ``gallery_size`` entries, none older than
   ``gallery_max_age`` steps since last seen (``_next_gallery``).
5. **Birth** (``_births``): the gallery matches of stage 2 revive their tracks, then each
   detection still left with score >= ``min_det_score`` starts a track, while fewer than
   ``max_tracks`` are active (the tracks kept by stage 4 count first, then the revived
   ones, then the most confident new people). A new track is confirmed at once when
   ``n_init == 1`` or on the session's first step (``confirm_on_first_frame``), else it
   is tentative.

6. **Smoothing** (only with ``config.smooth``; ``posestream.tracker.smoothing``): the reported
   keypoints of each person with a track id go through a One-Euro filter per joint, whose
   state (``state.filters``) keeps one row per active track. The track table keeps the raw
   detections, so association never sees smoothed joints.

The new state (``_next_tracks``) holds the kept tracks (matched ones take the detection's
keypoints, box, score, SIE, backward TIE and tags), then the revived, then the born ones.

**Ids.** ``state.next_id`` is the only id counter; ids are never reused in a session.
With ``report_tentative=False`` (default) an id is spent when a track is confirmed and
tentative tracks are reported as -1, so every id a user sees belongs to a person who was
tracked for ``n_init`` frames, and false-positive flickers neither show up with an id
nor leave gaps in the id sequence. The price is ``n_init - 1`` frames of -1 for a new
person; people present on the first frame and people re-identified from the gallery get
their id at once. With ``report_tentative=True`` ids are spent and shown at birth.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from posestream.models.poses import FramePoses
from posestream.tracker.assignment import assign
from posestream.tracker.config import TrackerConfig
from posestream.tracker.costs import check_detection_fields, combined_cost, he_distance
from posestream.tracker.smoothing import smooth_poses
from posestream.tracker.state import CONFIRMED, TENTATIVE, Gallery, TrackerState, Tracks

logger = logging.getLogger(__name__)

__all__ = ["step"]


def step(state: TrackerState, poses: FramePoses, config: TrackerConfig) -> tuple[TrackerState, FramePoses]:
    """Track one frame (see the module docstring for the stages and the id policy).

    Args:
        state: the session's state after the previous frame (``TrackerState.initial()``
            for a new session). Not modified.
        poses: this frame's N detected people (keypoints, boxes and scores finite); the
            preset's optional per-person arrays (``embeddings``, ``sie``, ...) are required
            when N > 0 (``ValueError`` naming the preset otherwise).
        config: thresholds and weights.
    Returns:
        The new state and ``poses.with_track_ids(ids)``: the same people in the same
        order, each with its (reported) track id or -1 (and, with ``config.smooth``,
        smoothed keypoints).
    """
    t = state.frame_index
    _check_finite(poses)
    if len(poses):
        check_detection_fields(poses, config)
    tracks, gallery = _adopt_dims(state, poses)
    matches, free_t, free_d = _associate(tracks, poses, config)
    matches, revive_g, revive_d = _reidentify(tracks, gallery, poses, matches, free_t, free_d, config)
    upd = _update(tracks, gallery, poses, matches, revive_g, state.next_id, config)
    lost, keep = _misses(upd, config)
    born = _births(poses, upd, keep, revive_g, revive_d, t, config)
    new_tracks = _next_tracks(tracks, gallery, poses, upd, keep, born, t, config)
    claimed = np.concatenate([born.revive_g, upd.claim_g])
    new_gallery = _next_gallery(gallery, claimed, tracks, lost, upd.misses, upd.age, t, config)

    # Each detection's track id, in detection order.
    track_ids = np.full(len(poses), -1, np.int64)
    track_ids[upd.match_d] = upd.ids[upd.match_t]
    if len(born.new_d):
        track_ids[born.new_d] = new_tracks.ids[born.n_kept :]
    out = poses.with_track_ids(track_ids)
    filters = None
    if config.smooth:
        filters, out = smooth_poses(
            state.filters, out, new_tracks.ids,
            min_cutoff=config.smooth_min_cutoff, beta=config.smooth_beta, d_cutoff=config.smooth_d_cutoff,
            keypoint_threshold=config.keypoint_threshold,
        )  # fmt: skip
    return TrackerState(new_tracks, new_gallery, born.next_id, t + 1, filters), out


def _associate(
    tracks: Tracks, dets: FramePoses, config: TrackerConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage 1: (M, 2) (track row, detection row) matches by the preset's cost, and the
    unmatched track rows and detection rows."""
    n_trk, n_det = len(tracks), len(dets)
    if n_trk and n_det:
        return assign(combined_cost(tracks, dets, config))
    return np.zeros((0, 2), np.int64), np.arange(n_trk), np.arange(n_det)


def _reidentify(
    tracks: Tracks,
    gallery: Gallery,
    dets: FramePoses,
    matches: np.ndarray,
    free_t: np.ndarray,
    free_d: np.ndarray,
    config: TrackerConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage 2: HE matching of the leftover confident detections with the leftover tracks
    (appended to ``matches``) and the gallery (returned as gallery rows and detection rows
    to revive)."""
    if dets.embeddings is None or config.reid_max_distance <= 0 or not len(free_d):
        return matches, np.zeros(0, np.int64), np.zeros(0, np.int64)
    cand_d = free_d[dets.scores[free_d] >= config.min_det_score]
    cand_t = free_t[~np.isnan(tracks.embeddings[free_t]).any(axis=1)]
    if not (len(cand_d) and (len(cand_t) or len(gallery))):
        return matches, np.zeros(0, np.int64), np.zeros(0, np.int64)
    pool = np.concatenate([tracks.embeddings[cand_t], gallery.embeddings])
    m2, _, _ = assign(he_distance(pool, dets.embeddings[cand_d]), config.reid_max_distance)
    is_track = m2[:, 0] < len(cand_t)
    matches = np.concatenate([matches, np.stack([cand_t[m2[is_track, 0]], cand_d[m2[is_track, 1]]], axis=1)])
    return matches, m2[~is_track, 0] - len(cand_t), cand_d[m2[~is_track, 1]]


@dataclasses.dataclass(frozen=True, eq=False)
class _Updated:
    """Stage 3's result: the active tracks' rows after this frame's matches.

    ``match_t`` / ``match_d`` (M,) the matched track and detection rows; ``matched`` (T,) bool;
    ``ids``, ``status``, ``hits``, ``age`` (T,) updated (ids of newly confirmed tracks spent or
    claimed from the gallery); ``misses`` (T,) consecutive unmatched frames; ``blended``
    (M, E) the matched tracks' new HE (None without HE); ``claim_g`` gallery rows whose ids
    were taken back; ``next_id`` the id counter after the confirmations.
    """

    match_t: np.ndarray
    match_d: np.ndarray
    matched: np.ndarray
    ids: np.ndarray
    status: np.ndarray
    hits: np.ndarray
    misses: np.ndarray
    age: np.ndarray
    blended: np.ndarray | None
    claim_g: np.ndarray
    next_id: int


def _update(
    tracks: Tracks,
    gallery: Gallery,
    dets: FramePoses,
    matches: np.ndarray,
    revive_g: np.ndarray,
    next_id: int,
    config: TrackerConfig,
) -> _Updated:
    """Stage 3: count hits, confirm, blend the HE, claim gallery ids for young tracks, spend ids."""
    n_trk = len(tracks)
    match_t, match_d = matches[:, 0], matches[:, 1]
    matched = np.zeros(n_trk, bool)
    matched[match_t] = True
    ids = tracks.ids.copy()
    status = tracks.status.copy()
    hits = tracks.hits.copy()
    hits[match_t] += 1
    misses = np.where(matched, 0, tracks.misses + 1).astype(np.int32)
    age = tracks.age + np.int32(1)
    confirm = matched & (status == TENTATIVE) & (hits >= config.n_init)
    status[confirm] = CONFIRMED
    # Appearance after this frame: a running mean while the track is young, then the
    # moving average, so one odd first frame (half hidden, just re-entering) cannot
    # dominate the HE of a new track.
    blended = None
    if dets.embeddings is not None and len(match_t):
        momentum = np.minimum(config.embedding_momentum, tracks.hits[match_t] / (tracks.hits[match_t] + 1.0))
        # A detection's HE counts in proportion to how much of the person is visible: a
        # person walking behind an occluder must not overwrite their appearance with the
        # few joints still showing.
        visible = (dets.keypoints[match_d, :, 2] > config.keypoint_threshold).mean(axis=1)
        momentum = 1.0 - (1.0 - momentum) * visible
        blended = _blend(tracks.embeddings[match_t], dets.embeddings[match_d], momentum)
    # A track confirmed now may be a lost person coming back (e.g. re-emerging from
    # behind an occluder half visible, too unlike them for stage 2): with n_init frames of
    # appearance, compare it with the gallery once more before spending a new id.
    # Young tracks (born up to n_init + reid_window frames ago) stay eligible too: a person
    # re-emerging half hidden often looks like themselves again only a few frames later.
    claim_g = np.zeros(0, np.int64)
    young = matched & (status == CONFIRMED) & (age <= config.n_init + config.reid_window)
    new_rows = np.flatnonzero(young | (confirm & (ids < 0)))
    # (blended implies dets.embeddings; testing both tells the type checker so)
    if (
        blended is not None and dets.embeddings is not None
        and len(new_rows) and len(gallery) and config.reid_max_distance > 0
    ):  # fmt: skip
        free_g = np.setdiff1d(np.arange(len(gallery)), revive_g)
        pos = np.full(n_trk, -1, np.int64)
        pos[match_t] = np.arange(len(match_t))
        row_pos = pos[new_rows]  # confirmed rows are matched rows
        if len(free_g):
            # By the track's averaged appearance, or by this frame's appearance when the
            # person is at least half visible (the average still carries the first,
            # half-hidden frames of a person who just re-emerged).
            dist = he_distance(gallery.embeddings[free_g], blended[row_pos])
            current = dets.embeddings[match_d[row_pos]]
            clear = visible[row_pos] >= 0.5
            dist = np.where(
                clear[None, :], np.minimum(dist, he_distance(gallery.embeddings[free_g], current)), dist
            )
            m3, _, _ = assign(dist, config.reid_max_distance)
            claim_g = free_g[m3[:, 0]]
            ids[new_rows[m3[:, 1]]] = gallery.ids[claim_g]
    for row in np.flatnonzero(confirm & (ids < 0)):
        ids[row] = next_id
        next_id += 1
    return _Updated(match_t, match_d, matched, ids, status, hits, misses, age, blended, claim_g, next_id)


def _misses(upd: _Updated, config: TrackerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Stage 4: (T,) bool masks of the tracks lost now and of the tracks kept active.

    Tentative tracks go at once when unmatched, confirmed ones after ``max_missed`` frames.
    """
    confirmed = upd.status == CONFIRMED
    lost = ~upd.matched & confirmed & (upd.misses > config.max_missed)
    keep = upd.matched | (confirmed & ~lost)
    return lost, keep


@dataclasses.dataclass(frozen=True, eq=False)
class _Born:
    """Stage 5's result: the tracks added after the kept ones.

    ``revive_g`` / ``revive_d`` the gallery rows revived and their detection rows (within
    ``max_tracks``); ``born_d`` the detection rows starting a track, with ``born_ids`` (-1
    while tentative and unreported) and ``start_confirmed``; ``new_d`` revived then born
    detection rows; ``all_kept`` / ``n_kept`` how many active tracks stay; ``next_id`` the
    id counter after the births.
    """

    revive_g: np.ndarray
    revive_d: np.ndarray
    born_d: np.ndarray
    born_ids: np.ndarray
    start_confirmed: bool
    new_d: np.ndarray
    all_kept: bool
    n_kept: int
    next_id: int


def _births(
    dets: FramePoses,
    upd: _Updated,
    keep: np.ndarray,
    revive_g: np.ndarray,
    revive_d: np.ndarray,
    t: int,
    config: TrackerConfig,
) -> _Born:
    """Stage 5: revive the gallery matches and start tracks for the confident leftovers, within max_tracks."""
    n_trk, n_det = len(keep), len(dets)
    all_kept = bool(keep.all())
    n_kept = n_trk if all_kept else int(keep.sum())
    room = max(config.max_tracks - n_kept, 0)
    if len(revive_d) > room:
        # Debug, not warning: a full tracker would log this on every frame.
        logger.debug(
            "frame %d: max_tracks reached, %d re-identified people untracked", t, len(revive_d) - room
        )
        revive_g, revive_d = revive_g[:room], revive_d[:room]
    room -= len(revive_d)
    taken = np.zeros(n_det, bool)
    taken[upd.match_d] = True
    taken[revive_d] = True
    born_d = np.flatnonzero(~taken & (dets.scores >= config.min_det_score))
    if len(born_d) > room:
        logger.debug("frame %d: max_tracks reached, %d new people untracked", t, len(born_d) - room)
        best = np.argsort(-dets.scores[born_d], kind="stable")[:room]
        born_d = np.sort(born_d[best])
    start_confirmed = config.n_init <= 1 or (config.confirm_on_first_frame and t == 0)
    next_id = upd.next_id
    n_born = len(born_d)
    if start_confirmed or config.report_tentative:
        born_ids = np.arange(next_id, next_id + n_born, dtype=np.int64)
        next_id += n_born
    else:
        born_ids = np.full(n_born, -1, np.int64)
    new_d = np.concatenate([revive_d, born_d]) if len(revive_d) else born_d
    return _Born(revive_g, revive_d, born_d, born_ids, start_confirmed, new_d, all_kept, n_kept, next_id)


def _next_tracks(
    tracks: Tracks,
    gallery: Gallery,
    dets: FramePoses,
    upd: _Updated,
    keep: np.ndarray,
    born: _Born,
    t: int,
    config: TrackerConfig,
) -> Tracks:
    """The new track table: kept rows (matched ones refreshed from their detection), then
    revived, then born tracks."""
    all_kept, new_d, match_d = born.all_kept, born.new_d, upd.match_d
    revive_g = born.revive_g
    n_rev, n_born = len(born.revive_d), len(born.born_d)
    rows = upd.match_t if all_kept else (np.cumsum(keep) - 1)[upd.match_t]

    def table(old: np.ndarray, det_values: np.ndarray | None) -> np.ndarray:
        out = old.copy() if all_kept else old[keep]
        if det_values is None:  # the detections lack this optional field: unknown (NaN)
            out[rows] = np.nan
            new = np.full((len(new_d), *old.shape[1:]), np.nan, old.dtype)
        else:
            out[rows] = det_values[match_d]
            new = det_values[new_d]
        return np.concatenate([out, new]) if len(new_d) else out

    if dets.embeddings is None:  # keep the appearance model as it was
        embeddings = tracks.embeddings.copy() if all_kept else tracks.embeddings[keep]
        if len(new_d):
            embeddings = np.concatenate(
                [embeddings, np.full((len(new_d), embeddings.shape[1]), np.nan, np.float32)]
            )
    else:
        new_emb = dets.embeddings[new_d]
        if n_rev:
            new_emb[:n_rev] = _blend(gallery.embeddings[revive_g], new_emb[:n_rev], config.embedding_momentum)
        embeddings = tracks.embeddings.copy() if all_kept else tracks.embeddings[keep]
        if upd.blended is not None:
            embeddings[rows] = upd.blended
        if len(new_d):
            embeddings = np.concatenate([embeddings, new_emb])

    def counters(kept: np.ndarray, revived: np.ndarray, new: np.ndarray) -> np.ndarray:
        kept = kept if all_kept else kept[keep]
        return np.concatenate([kept, revived, new]) if len(new_d) else kept

    return Tracks._owning(
        ids=counters(upd.ids, gallery.ids[revive_g], born.born_ids),
        status=counters(
            upd.status,
            np.full(n_rev, CONFIRMED, np.int8),
            np.full(n_born, CONFIRMED if born.start_confirmed else TENTATIVE, np.int8),
        ),
        keypoints=table(tracks.keypoints, dets.keypoints),
        boxes=table(tracks.boxes, dets.boxes),
        scores=table(tracks.scores, dets.scores),
        embeddings=embeddings,
        sie=table(tracks.sie, dets.sie),
        tie_bwd=table(tracks.tie_bwd, dets.tie_bwd),
        tags=table(tracks.tags, dets.tags),
        hits=counters(upd.hits, gallery.hits[revive_g] + np.int32(1), np.ones(n_born, np.int32)),
        misses=counters(upd.misses, np.zeros(n_rev, np.int32), np.zeros(n_born, np.int32)),
        age=counters(
            upd.age,
            gallery.age[revive_g] + (t - gallery.last_seen[revive_g]).astype(np.int32),
            np.zeros(n_born, np.int32),
        ),
    )


def _check_finite(poses: FramePoses) -> None:
    """``ValueError`` unless the keypoints, boxes and scores are finite (the costs need them so)."""
    for name in ("keypoints", "boxes", "scores"):
        if not np.isfinite(getattr(poses, name)).all():
            raise ValueError(f"{name} contains NaN or infinity; the tracker needs finite values")


def _next_gallery(
    gallery: Gallery,
    revived: np.ndarray,
    tracks: Tracks,
    lost: np.ndarray,
    misses: np.ndarray,
    age: np.ndarray,
    t: int,
    config: TrackerConfig,
) -> Gallery:
    """Gallery minus the revived entries plus the newly lost tracks (those with an HE), aged and capped."""
    if not len(gallery) and not lost.any():
        return gallery
    remaining = np.ones(len(gallery), bool)
    remaining[revived] = False
    # A lost track's HE is its last one: it was not matched in this step.
    lost = lost & ~np.isnan(tracks.embeddings).any(axis=1)
    merged_ids = np.concatenate([gallery.ids[remaining], tracks.ids[lost]])
    merged_last = np.concatenate([gallery.last_seen[remaining], t - misses[lost].astype(np.int64)])
    merged_emb = np.concatenate([gallery.embeddings[remaining], tracks.embeddings[lost]])
    merged_hits = np.concatenate([gallery.hits[remaining], tracks.hits[lost]])
    merged_age = np.concatenate([gallery.age[remaining], age[lost]])
    keep = (t - merged_last) <= config.gallery_max_age
    if keep.sum() > config.gallery_size:
        # Keep the entries seen most recently; among equals, the later-added ones.
        order = np.lexsort((-np.arange(len(keep)), -merged_last))
        order = order[keep[order]][: config.gallery_size]
        keep = np.zeros(len(keep), bool)
        keep[order] = True
    return Gallery._owning(
        ids=merged_ids[keep], embeddings=merged_emb[keep], last_seen=merged_last[keep],
        hits=merged_hits[keep], age=merged_age[keep],
    )  # fmt: skip


def _adopt_dims(state: TrackerState, dets: FramePoses) -> tuple[Tracks, Gallery]:
    """The state's tracks and gallery, padded with NaN to the HE/KE sizes of the detections."""
    tracks, gallery = state.tracks, state.gallery
    e_s, e_d = state.embedding_dim, dets.embedding_dim
    if e_d and e_s != e_d:
        if e_s:
            raise ValueError(
                f"the detections' HE has {e_d} dimensions but this session's tracks have {e_s}; "
                f"a session must keep one HE model (start a new session to switch)"
            )
        tracks = dataclasses.replace(tracks, embeddings=np.full((len(tracks), e_d), np.nan, np.float32))
        gallery = dataclasses.replace(gallery, embeddings=np.full((len(gallery), e_d), np.nan, np.float32))
    d_s, d_d = state.tag_dim, dets.tag_dim
    if d_d and d_s != d_d:
        if d_s:
            raise ValueError(
                f"the detections' KE tags have {d_d} values per joint but this session's tracks have {d_s}; "
                f"a session must keep one model (start a new session to switch)"
            )
        tracks = dataclasses.replace(
            tracks, tags=np.full((len(tracks), tracks.tags.shape[1], d_d), np.nan, np.float32)
        )
    return tracks, gallery


def _blend(old: np.ndarray, new: np.ndarray, momentum: float | np.ndarray) -> np.ndarray:
    """Re-normalised moving average ``m * old + (1 - m) * new`` of (K, E) unit HE rows, float32.

    ``momentum`` is one value or one per row (K,).

    A NaN row in ``old`` (a track started without HE) takes ``new`` as it is.
    """
    m = np.asarray(momentum, np.float32).reshape(-1, 1) if np.ndim(momentum) else np.float32(momentum)
    mixed = old * m
    mixed += new * (np.float32(1.0) - m)
    norm = np.sqrt(np.einsum("ij,ij->i", mixed, mixed))
    # NaN rows and (near-)opposite vectors that average to ~0 have no direction: take the new one.
    bad = ~(norm > 1e-6)
    if bad.any():
        mixed[bad] = new[bad]
        norm[bad] = 1.0
    mixed /= norm[:, None]
    return mixed
