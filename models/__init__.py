"""Networks and everything that needs torch: MoveNet, Thunder, SpatialNet, TemporalNet, decoders, training."""

# The folder is installed as ``posestream.models`` (pyproject's package-dir); imported as a
# top-level ``models`` (the checkout on sys.path) it would load a second copy of every module.
if __name__ != "posestream.models":
    raise ImportError(
        f"import posestream.models, not {__name__} (the folder is installed under the posestream package)"
    )
