"""Synthetic multi-person video whose ground truth is known exactly.

Used by tests, for training (SpatialNet heatmaps / embeddings, TemporalNet identity) and
for tracker evaluation with occlusion, crossing, camera pan and zoom. Torch-free.

Coordinate frames
-----------------
All positions are continuous pixel coordinates as in COCO: pixel ``(i, j)`` (column,
row) covers ``[i, i+1) x [j, j+1)``, so its centre is ``(i + 0.5, j + 0.5)`` and a point
``(x, y)`` lies on pixel ``(floor(x), floor(y))``; it is in the frame when
``0 <= x < width`` and ``0 <= y < height``.

- **World**: the image plane of the camera at rest (no pan, zoom 1). People, occluders
  and the background are placed here, in pixels. People stand on a ground plane seen by a
  pinhole camera with a horizontal optical axis (``Perspective``): a person whose feet
  touch the ground at world row ``y`` is ``slope * (y - horizon_y) * body_scale`` pixels
  tall, so people lower in the frame are nearer and larger, and the foot row ``y`` is the
  depth order (larger ``y`` = nearer = drawn on top).
- **Image**: world seen through the camera (``CameraSpec``):
  ``u = (X - (W/2 + pan_x)) * zoom + W/2`` and likewise for ``v``.

Scenes are plain frozen specs (``SceneSpec`` holding ``PersonSpec``, ``OccluderSpec``,
``CameraSpec``, ``Perspective``, ``BackgroundSpec``); ``random_scene`` draws one from a
seed, tests write them by hand (or start from ``crossing_scene``, ``occlusion_scene``,
``reentry_scene``, ``zoom_scene``). Every motion is an analytic function of the frame
index, so ``SyntheticClip.render(t)`` renders any frame without rendering the ones before
it. A scripted scene::

    scene = SceneSpec(
        width=640, height=480, frames=100,
        people=(
            PersonSpec(path=((0, 60, 300), (99, 580, 300))),                # far, walks right
            PersonSpec(path=((0, 580, 450), (99, 60, 450)), motion="run"),  # near, runs left
            PersonSpec(path=((0, 320, 330),), motion="wave", facing_deg=20),
        ),
        occluders=(OccluderSpec(x=200, y_base=420, width=90),),             # a pillar
        camera=CameraSpec(keys=((0, 0, 0, 1.0), (60, 40, 0, 1.4))),         # pan + zoom in
    )
    rgb, gt = SyntheticClip(scene).render(42)

Rendering and visibility
------------------------
Each person (and occluder) is rasterised, without anti-aliasing, into its own label crop
of body-part codes (the amodal mask). Crops are composited far to near into a frame-wide
object map and part map (a painter's z-buffer), and the pixels are shaded from those maps
only, so the picture and the masks agree exactly. Ground-truth visibility per keypoint
(the score column of ``FramePoses.keypoints``) is read from the maps at the keypoint's
pixel:

- 0 (absent): the keypoint's pixel is outside the frame. Its true ``(x, y)`` is kept
  even then (it may be negative or beyond the frame size).
- 1 (occluded): the pixel shows a nearer person or an occluder object, or the person's
  own body covers it (self-occlusion: a far-side limb behind the torso or the other
  limb, a far shoulder / hip behind the torso when the body is turned more than ~45
  degrees, face points on the far side of the head).
- 2 (visible): the pixel shows the body part the keypoint belongs to.

Boxes are the tight box of the person's whole drawn body (amodal: hidden parts count),
clipped to the frame, in the same continuous coordinates. People with no drawn pixel in
the frame are left out of that frame's list; track ids are the index of the person in
``SceneSpec.people``.

Package layout (one module per part, in dependency order)
---------------------------------------------------------
- ``specs``: the frozen scene specs and ``SyntheticConfig`` (plain data, validated).
- ``scenes``: ``random_scene``, the scene a seed stands for.
- ``body``: the 3D stick body, its part codes and layers, posed analytically.
- ``motion``: each person's motion along its path, analytic in the frame index.
- ``raster``: label-crop drawing helpers and the background painter.
- ``render``: ``SyntheticClip`` and ``RenderedFrame`` (compositing and visibility).
- ``scenarios``: scripted scenes for the tracker tests and demos.
- ``clip_writer``: ``write_synthetic_clip`` (video + JSON Lines ground truth).
"""

from posestream.models.data.synthetic.clip_writer import write_synthetic_clip
from posestream.models.data.synthetic.render import RenderedFrame, SyntheticClip
from posestream.models.data.synthetic.scenarios import (
    crossing_scene,
    occlusion_scene,
    reentry_scene,
    zoom_scene,
)
from posestream.models.data.synthetic.scenes import random_scene
from posestream.models.data.synthetic.specs import (
    BACKGROUND_STYLES,
    MOTIONS,
    OCCLUDER_TEXTURES,
    PATTERNS,
    Appearance,
    BackgroundSpec,
    CameraSpec,
    OccluderSpec,
    PersonSpec,
    Perspective,
    SceneSpec,
    SyntheticConfig,
)

__all__ = [
    "BACKGROUND_STYLES",
    "MOTIONS",
    "OCCLUDER_TEXTURES",
    "PATTERNS",
    "Appearance",
    "BackgroundSpec",
    "CameraSpec",
    "OccluderSpec",
    "PersonSpec",
    "Perspective",
    "RenderedFrame",
    "SceneSpec",
    "SyntheticClip",
    "SyntheticConfig",
    "crossing_scene",
    "occlusion_scene",
    "random_scene",
    "reentry_scene",
    "write_synthetic_clip",
    "zoom_scene",
]
