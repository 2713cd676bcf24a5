"""Seed 001: a recurrent per-person decoder with a learned stop, on SpatialNet's maps.

A ConvLSTM reads SpatialNet's last-stack features and joint heatmaps (frozen) and emits
one person's 17 joint heatmaps per step; each person takes ``1 + refine_loops`` iterations,
the later ones reading the earlier one's maps back (the paper's feedback loop). A stop head
on the max-pooled hidden states gives P_t, the confidence that step t is a new person;
decoding stops at the first P_t below ``stop_threshold``. Training matches each step's maps
to the ground-truth people with the Hungarian algorithm (``match_people``) and adds the
stop cross-entropy against ``stop_targets`` (seed 001 Eq. 1-3), backpropagating every
``backprop_every`` steps without clearing the hidden state (its within-image batching).

Deviations from seed 001, each for a CPU-sized model: the output is SpatialNet's own heatmaps
times a learned per-joint gate (it selects one person's heat and cannot add heat SpatialNet
missed); the ConvLSTM reads the last hourglass stack only (the paper: all four) at
``4 * pool`` stride; ``global_context`` and ``feedback_taken`` add paths the paper leaves to
the hidden state; there is no second LSTM (section 3.1.2, its Eq. 4); training uses batches of
several images and a larger learning rate (``posestream.models.train_recurrent``).

Shapes: ``h, w`` are the stride-4 map size (input pixels / 4); the ConvLSTM runs at
stride ``4 * pool``. Keypoints come out in network-input pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn import functional as F

from posestream.models.decode import refine_locations
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.models.targets import to_input_coords

__all__ = [
    "ConvLSTMCell",
    "DecoderContext",
    "RecurrentDecoder",
    "RecurrentDecoderConfig",
    "decode_sequence",
    "load_recurrent_decoder",
    "match_people",
    "matched_heat_loss",
    "stop_targets",
    "unrolled_loss",
]

STRIDE = 4  # the SpatialNet maps' stride (``posestream.models.spatialnet.STRIDE``)


@dataclass(frozen=True)
class RecurrentDecoderConfig:
    """Sizes, unrolling and decoding of the recurrent decoder.

    Attributes:
        feature_channels: channels of the SpatialNet features it reads (the hourglass width).
        project_channels: the 1x1 projection of features + heatmaps fed to the first ConvLSTM
            (computed once per image). Raising it gives the LSTM more to read at linear cost.
        hidden: hidden channels of each stacked ConvLSTM (seed 001 halves them per layer).
        kernel: ConvLSTM kernel size (seed 001: 3).
        pool: the ConvLSTM runs at stride ``4 * pool`` (features average-pooled); its
            per-joint gates are upsampled back to stride 4, where they select from
            SpatialNet's heatmaps. Raising it makes each step ``pool**2`` times cheaper and
            the selection coarser (1 = the paper's full output resolution).
        max_steps: most people decoded (and unrolled in training) per image.
        refine_loops: extra iterations per person through the feedback loop (seed 001: one
            loop, i.e. two iterations per person; 0 = no feedback).
        feedback_init: the first iteration of each person reads uniform noise in
            [0, feedback_init] as its feedback maps (seed 001: 0.1); inference reads its mean.
        global_context: feed the max-pooled hidden state (what the stop head reads) back into
            the next iteration's gates as a per-channel bias, so that distant cells agree on
            which one person a step emits. Not in seed 001 (whose 128x128 ConvLSTMs grow their
            reach only over iterations); off removes that path.
        feedback_taken: also feed every iteration the running maximum of the person maps
            already emitted in earlier steps (detached), so each cell sees which joints are taken
            and the stop can read whether untaken heat is left. Seed 001 keeps that memory in
            the hidden state alone; with it off (the paper's form) a CPU-sized run learned to
            emit 3-4 people and then repeat diffuse maps (``weights/README.md``).
        stop_threshold: omega; decoding halts at the first P_t below it (seed 001:
            sigmoid(-1) ~= 0.27). Raising it stops earlier: fewer false people, more missed.
        joint_threshold: tau; a joint whose heat maximum is below it is reported with score 0
            (seed 001: 0.015). Raising it drops more weak joints.
        min_joints: decoded people with fewer joints above ``joint_threshold`` are dropped.
            Raising it removes partial people (fewer false poses, fewer half-visible people).
        backprop_every: T, steps per within-image mini-batch: the loss is backpropagated and
            the hidden state detached every T steps (seed 001: 8). Lowering it saves memory.
        min_visible_joints: a ground-truth person counts (as a target and in the stop target)
            when at least this many of its joints are visible inside the maps. Raising it
            teaches the stop to skip people cut by the frame edge or mostly hidden.
        confident_heat_loss: seed 001's rule that the heatmap loss only applies to steps whose
            P_t >= omega (the ones decoding would output); off applies it to every step t < Z.
        stop_weight: weight of the stop loss against the heatmap loss (seed 001: equal).
    """

    feature_channels: int = 64
    project_channels: int = 32
    hidden: tuple[int, ...] = (32, 16)
    kernel: int = 3
    pool: int = 2
    max_steps: int = 20
    refine_loops: int = 1
    feedback_init: float = 0.1
    global_context: bool = True
    feedback_taken: bool = True
    stop_threshold: float = 1.0 / (1.0 + math.e)
    joint_threshold: float = 0.015
    min_joints: int = 3
    backprop_every: int = 8
    min_visible_joints: int = 3
    confident_heat_loss: bool = True
    stop_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden needs at least one layer of >= 1 channels, got {self.hidden}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and >= 1, got {self.kernel}")
        if self.pool < 1 or self.max_steps < 1 or self.backprop_every < 1 or self.refine_loops < 0:
            raise ValueError("pool, max_steps and backprop_every must be >= 1, refine_loops >= 0")
        if not 0.0 < self.stop_threshold < 1.0:
            raise ValueError(f"stop_threshold must be in (0, 1), got {self.stop_threshold}")
        if not 0.0 <= self.joint_threshold < 1.0 or not 0.0 <= self.feedback_init <= 1.0:
            raise ValueError("joint_threshold must be in [0, 1) and feedback_init in [0, 1]")
        if not 0 <= self.min_joints <= NUM_KEYPOINTS or self.min_visible_joints < 1 or self.stop_weight < 0:
            raise ValueError("min_joints must be in 0..17, min_visible_joints >= 1 and stop_weight >= 0")


class ConvLSTMCell(nn.Module):
    """A ConvLSTM cell (Shi et al. 2015): an LSTM whose gates are convolutions.

    ``forward(x (B, Cin, H, W), (h, c) each (B, hidden, H, W), bias (B, 4 * hidden) or None)``
    returns the new ``(h, c)``; ``bias`` is added to the gate pre-activations everywhere.
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)
        with torch.no_grad():  # forget gate starts open (a standard LSTM initialisation)
            self.conv.bias[hidden : 2 * hidden].fill_(1.0)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        gates = self.conv(torch.cat([x, h], dim=1))
        if bias is not None:
            gates = gates + bias[:, :, None, None]
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


@dataclass
class DecoderContext:
    """What every step of one batch reads.

    ``inputs`` (B, P, h/pool, w/pool) and ``heatmaps`` (B, J, h, w) are fixed; ``taken``
    (B, J, h, w) is the running maximum of the person maps emitted so far, which
    ``RecurrentDecoder.person`` updates after each step (``feedback_taken``).
    """

    inputs: torch.Tensor
    heatmaps: torch.Tensor
    taken: torch.Tensor


State = list[tuple[torch.Tensor, torch.Tensor]]


class RecurrentDecoder(nn.Module):
    """The ConvLSTM stack, its per-person heatmap head and its stop head."""

    def __init__(self, config: RecurrentDecoderConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        # Seed 001 normalises its batch-1 inputs with the running statistics of the whole data (an
        # affine BatchNorm). Here training normalises by the batch's statistics (batches of 4) and
        # inference by the running ones, as a plain BatchNorm does: a documented deviation.
        self.norm = nn.BatchNorm2d(cfg.feature_channels + NUM_KEYPOINTS)
        self.project = nn.Conv2d(cfg.feature_channels + NUM_KEYPOINTS + 2, cfg.project_channels, 1)
        cells, in_ch = [], cfg.project_channels + NUM_KEYPOINTS * (2 if cfg.feedback_taken else 1)
        for hidden in cfg.hidden:
            cells.append(ConvLSTMCell(in_ch, hidden, cfg.kernel))
            in_ch = hidden
        self.cells = nn.ModuleList(cells)
        pooled = sum(cfg.hidden)
        self.context = nn.Linear(pooled, 4 * cfg.hidden[0]) if cfg.global_context else None
        if self.context is not None:
            nn.init.zeros_(self.context.weight)
            nn.init.zeros_(self.context.bias)
        self.gate = nn.Conv2d(cfg.hidden[-1], NUM_KEYPOINTS, 3, padding=1)
        self.stop = nn.Linear(pooled, 1)

    def prepare(self, features: torch.Tensor, heatmaps: torch.Tensor) -> DecoderContext:
        """SpatialNet's (B, C, h, w) features and (B, J, h, w) heatmaps in [0, 1] -> the per-batch context.

        h and w must be multiples of ``pool``. Two coordinate channels, -1..1 across the map
        whatever its size, go into the projection (they let the decoder order people by place;
        their scale differs between training windows and whole frames, a known limit).
        """
        p = self.config.pool
        if features.shape[-1] % p or features.shape[-2] % p:
            raise ValueError(f"map size {tuple(features.shape[-2:])} must be a multiple of pool {p}")
        heat = heatmaps.float().clamp(0, 1)
        x = self.norm(torch.cat([features.float(), heat], dim=1))
        if p > 1:
            x = F.avg_pool2d(x, p)
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
        return DecoderContext(self.project(torch.cat([x, xs, ys], dim=1)), heat, torch.zeros_like(heat))

    def initial_state(self, ctx: DecoderContext) -> tuple[State, torch.Tensor]:
        """Zero hidden states and the zero pooled-hidden vector (B, sum(hidden))."""
        b, _, h, w = ctx.inputs.shape
        z = ctx.inputs.new_zeros
        return [(z(b, n, h, w), z(b, n, h, w)) for n in self.config.hidden], z(b, sum(self.config.hidden))

    def iterate(
        self, ctx: DecoderContext, state: State, pooled: torch.Tensor, feedback: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, State, torch.Tensor]:
        """One ConvLSTM iteration.

        Args:
            feedback: (B, J, h, w) the maps fed back (the previous iteration's, or the noise).
            pooled: (B, sum(hidden)) the previous iteration's max-pooled hidden states.
        Returns:
            heatmaps (B, J, h, w) = SpatialNet's heatmaps x the per-joint gate, the stop
            logit (B,), the new state and the new pooled vector.
        """
        p = self.config.pool
        maps = [feedback, ctx.taken] if self.config.feedback_taken else [feedback]
        x = torch.cat([ctx.inputs, *[F.max_pool2d(m, p) if p > 1 else m for m in maps]], dim=1)
        bias = self.context(pooled) if self.context is not None else None
        new_state: State = []
        for k, cell in enumerate(self.cells):
            h, c = cell(x, state[k], bias if k == 0 else None)
            new_state.append((h, c))
            x = h
        pooled = torch.cat([h.amax(dim=(2, 3)) for h, _ in new_state], dim=1)
        gate = self.gate(x)
        if p > 1:
            gate = F.interpolate(gate, size=ctx.heatmaps.shape[-2:], mode="bilinear", align_corners=False)
        return ctx.heatmaps * torch.sigmoid(gate), self.stop(pooled).squeeze(1), new_state, pooled

    def person(
        self,
        ctx: DecoderContext,
        state: State,
        pooled: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, State, torch.Tensor]:
        """One output step t: ``1 + refine_loops`` iterations, the later ones fed the earlier's maps.

        ``generator`` draws the first iteration's uniform feedback (training); None feeds its
        mean (deterministic inference). Returns the last iteration's ``iterate`` outputs, and
        adds its maps to ``ctx.taken`` (so a context serves one unroll: ``prepare`` a new one
        for the next).
        """
        cfg = self.config
        shape = ctx.heatmaps.shape
        if generator is None:
            feedback = ctx.heatmaps.new_full(shape, cfg.feedback_init / 2)
        else:
            feedback = (
                torch.rand(shape, generator=generator, device="cpu").to(ctx.heatmaps) * cfg.feedback_init
            )
        for _ in range(1 + cfg.refine_loops):
            heat, logit, state, pooled = self.iterate(ctx, state, pooled, feedback)
            feedback = heat
        ctx.taken = torch.maximum(ctx.taken, heat.detach())
        return heat, logit, state, pooled

    @torch.inference_mode()
    def run(self, features: torch.Tensor, heatmaps: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Unroll until every image's P_t < omega (or ``max_steps``).

        Returns:
            per image: its steps' heatmaps (T, J, h, w) and stop probabilities (T,), up to and
            including the first step below ``stop_threshold``.
        """
        ctx = self.prepare(features, heatmaps)
        state, pooled = self.initial_state(ctx)
        b = features.shape[0]
        heats: list[list[torch.Tensor]] = [[] for _ in range(b)]
        probs: list[list[torch.Tensor]] = [[] for _ in range(b)]
        done = torch.zeros(b, dtype=torch.bool)
        for _ in range(self.config.max_steps):
            heat, logit, state, pooled = self.person(ctx, state, pooled)
            p = torch.sigmoid(logit).cpu()
            for i in np.flatnonzero(~done.numpy()):
                heats[i].append(heat[i].cpu())
                probs[i].append(p[i])
            done |= p < self.config.stop_threshold
            if bool(done.all()):
                break
        return [(torch.stack(hs), torch.stack(ps)) for hs, ps in zip(heats, probs, strict=True)]

    def decode_batch(
        self, features: torch.Tensor, heatmaps: torch.Tensor
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``run`` then ``decode_sequence`` per image: keypoints (P, 17, 3) in input pixels, scores (P,)."""
        return [decode_sequence(h, p, self.config) for h, p in self.run(features, heatmaps)]


def stop_targets(true_count: int, predicted_count: int) -> np.ndarray:
    """Seed 001 Eq. 1: the stop target vector, length ``max(Z_hat, Z) + 1``.

    Ones for the ``Z`` true people, zeros after: ``[1] * Z + [0]`` when ``Z_hat <= Z``,
    ``[1] * Z + [0] * (Z_hat - Z + 1)`` otherwise.
    """
    if true_count < 0 or predicted_count < 0:
        raise ValueError("counts must be >= 0")
    n = max(true_count, predicted_count) + 1
    out = np.zeros(n, np.float32)
    out[:true_count] = 1.0
    return out


def match_people(pred: torch.Tensor, gt: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment of predicted to ground-truth people on seed 001's heatmap cost.

    ``C[k, k'] = sum_j ||H_k,j - G_k',j||_2``: the sum over joints of the L2 distance between
    the two people's maps (not between their maxima, which the paper finds more fragile).

    Args:
        pred: (T, J, h, w) predicted per-person heatmaps; gt: (Z, J, h, w) ground truth.
    Returns:
        (rows, cols) of the ``min(T, Z)`` matched pairs, rows ascending.
    """
    if len(pred) == 0 or len(gt) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    with torch.no_grad():
        diff = pred.detach().flatten(2)[:, None] - gt.flatten(2)[None]  # (T, Z, J, hw)
        cost = diff.pow(2).sum(-1).sqrt().sum(-1)
    rows, cols = linear_sum_assignment(cost.cpu().double().numpy())
    return rows.astype(np.int64), cols.astype(np.int64)


def matched_heat_loss(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Seed 001 Eq. 2 on the Hungarian-matched pairs: sum over pairs, joints and pixels of (H - G)^2.

    Args:
        pred: (T, J, h, w); gt: (Z, J, h, w).
    Returns:
        the loss (a scalar tensor; 0 when either side is empty) and ``match_people``'s rows, cols.
    """
    rows, cols = match_people(pred, gt)
    return (pred[rows] - gt[cols]).pow(2).sum(), rows, cols


def unrolled_loss(
    decoder: RecurrentDecoder, ctx: DecoderContext, people: list[torch.Tensor],
    generator: torch.Generator | None = None, backward: bool = True,
) -> dict[str, float]:  # fmt: skip
    """Seed 001's training loss over one batch, with its within-image batching.

    Unrolls the decoder; image b takes part at step t while ``t <= Z_b`` or while no earlier
    P_t fell below omega (the length of ``stop_targets``). Every ``backprop_every`` steps (and
    at the end) the steps since the last cut are matched to the ground-truth people not yet
    assigned (``match_people``), their squared-L2 heatmap loss (Eq. 2, summed over joints and
    pixels; with ``confident_heat_loss`` only on steps with P_t >= omega) and the stop
    cross-entropy (Eq. 3) are summed, averaged over the batch, and -- with ``backward`` --
    backpropagated; the hidden state is then detached, not cleared, and the assigned people
    leave the pool.

    Args:
        ctx: ``decoder.prepare`` of the batch (gradients flow into its projection).
        people: per image, (Z_b, J, h, w) ground-truth heatmaps of each person on its own.
    Returns:
        summed ``heat``, ``stop`` and ``total`` loss values, the ``steps`` unrolled and the
        ground-truth people ``matched`` (each at most once over the chunks).
    """
    cfg = decoder.config
    b = len(people)
    counts = [len(p) for p in people]
    remaining = [list(range(n)) for n in counts]
    stopped = [False] * b
    state, pooled = decoder.initial_state(ctx)
    totals = {"heat": 0.0, "stop": 0.0, "total": 0.0, "steps": 0, "matched": 0}
    chunk: list[list[tuple[int, torch.Tensor]]] = [[] for _ in range(b)]
    stop_terms: list[torch.Tensor] = []
    t = 0
    while t < cfg.max_steps and any(t <= counts[i] or not stopped[i] for i in range(b)):
        heat, logit, state, pooled = decoder.person(ctx, state, pooled, generator)
        prob = torch.sigmoid(logit.detach())
        for i in range(b):
            if not (t <= counts[i] or not stopped[i]):
                continue
            target = logit.new_tensor(float(stop_targets(counts[i], t)[t]))
            stop_terms.append(F.binary_cross_entropy_with_logits(logit[i], target))
            if t < counts[i] and (not cfg.confident_heat_loss or prob[i] >= cfg.stop_threshold):
                chunk[i].append((t, heat[i]))
            stopped[i] = stopped[i] or bool(prob[i] < cfg.stop_threshold)
        t += 1
        last = not (t < cfg.max_steps and any(t <= counts[i] or not stopped[i] for i in range(b)))
        if t % cfg.backprop_every and not last:
            continue
        heat_loss = heat.sum() * 0.0
        for i in range(b):
            if not chunk[i] or not remaining[i]:
                continue
            pred = torch.stack([h for _, h in chunk[i]])
            loss, _, cols = matched_heat_loss(pred, people[i][remaining[i]].to(pred.device))
            heat_loss = heat_loss + loss
            taken = {remaining[i][c] for c in cols}
            totals["matched"] += len(taken)
            remaining[i] = [k for k in remaining[i] if k not in taken]
            chunk[i] = []
        stop_loss = torch.stack(stop_terms).sum() if stop_terms else heat_loss * 0.0
        total = (heat_loss + cfg.stop_weight * stop_loss) / b
        if backward and total.requires_grad:
            total.backward(retain_graph=not last)  # ctx is shared by the chunks still to come
        totals["heat"] += float(heat_loss.detach()) / b
        totals["stop"] += float(stop_loss.detach()) / b
        totals["total"] += float(total.detach())
        del total, heat_loss, stop_loss  # the chunk's graph goes with its last references
        stop_terms = []
        state = [(h.detach(), c.detach()) for h, c in state]
        pooled = pooled.detach()
    totals["steps"] = t
    return totals


def decode_sequence(
    heats: torch.Tensor, probs: torch.Tensor, config: RecurrentDecoderConfig, stride: int = STRIDE
) -> tuple[np.ndarray, np.ndarray]:
    """One image's steps -> poses, with no grouping: each step before the first P_t < omega is a person.

    Each joint is the arg-max of its map, refined to sub-pixel by the parabola through the
    log-heat (``refine_locations`` "gaussian"); a joint below ``joint_threshold`` keeps its
    location with score 0; a person's score is P_t times the mean of its 17 joint scores.

    Args:
        heats: (T, J, h, w) per-step heatmaps at ``stride``; probs: (T,) stop probabilities.
    Returns:
        keypoints (P, J, 3) as (x, y, score) in input pixels, scores (P,).
    """
    probs = probs.detach().float().cpu()
    below = np.flatnonzero(probs.numpy() < config.stop_threshold)
    n = int(below[0]) if len(below) else len(probs)
    t, j, h, w = heats.shape
    if n == 0:
        return np.zeros((0, j, 3), np.float32), np.zeros(0, np.float32)
    maps = heats[:n].detach().float().cpu()
    flat = maps.flatten(2)
    vals, idx = flat.max(dim=-1)  # (n, J)
    joints = np.stack([(idx % w).numpy(), (idx // w).numpy(), vals.numpy()], axis=-1).astype(np.float64)
    joints[..., 2] = np.where(joints[..., 2] >= config.joint_threshold, joints[..., 2], 0.0)
    people = []
    for k in range(n):  # each person refines on its own maps
        people.append(refine_locations(joints[k : k + 1], maps[k], "gaussian")[0])
    out = np.stack(people)
    kept = (out[..., 2] > 0).sum(axis=1)
    scores = probs[:n].numpy() * out[..., 2].mean(axis=1)
    keep = kept >= config.min_joints
    out, scores = out[keep], scores[keep]
    out[..., :2] = to_input_coords(out[..., :2], stride)
    return out.astype(np.float32), scores.astype(np.float32)


def load_recurrent_decoder(path: str | Path) -> tuple[RecurrentDecoder, dict]:
    """A decoder exported by ``posestream train recurrent`` (eval mode, CPU) and its card."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    cfg = dict(blob["config"])
    cfg["hidden"] = tuple(cfg["hidden"])
    decoder = RecurrentDecoder(RecurrentDecoderConfig(**cfg))
    decoder.load_state_dict(blob["state_dict"])
    return decoder.eval(), blob.get("card", {})
