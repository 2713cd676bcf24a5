"""posestream: online multi-person video pose tracking.

The installed package maps the repository's top-level folders in: ``posestream.models``
(networks, torch), ``posestream.tracker`` (tracking, no torch) and ``posestream.service``
(gateway, worker, CLI). See ``pyproject.toml``'s ``package-dir`` and ``docs/architecture.md``.
"""

__version__ = "0.1.0"
