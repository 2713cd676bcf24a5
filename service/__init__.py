"""The running service: settings, wire messages, gateway, worker, pipeline and CLI commands."""

# The folder is installed as ``posestream.service`` (pyproject's package-dir); imported as a
# top-level ``service`` (the checkout on sys.path) it would load a second copy of every module.
if __name__ != "posestream.service":
    raise ImportError(
        f"import posestream.service, not {__name__} (the folder is installed under the posestream package)"
    )
