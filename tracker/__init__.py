"""Tracking without torch: costs, assignment, lifecycle, serialisable state, state stores, metrics."""

# The folder is installed as ``posestream.tracker`` (pyproject's package-dir); imported as a
# top-level ``tracker`` (the checkout on sys.path) it would load a second copy of every module.
if __name__ != "posestream.tracker":
    raise ImportError(
        f"import posestream.tracker, not {__name__} (the folder is installed under the posestream package)"
    )
