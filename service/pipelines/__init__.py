"""Concrete ``FramePipeline`` implementations (see ``posestream.service.pipeline``)."""
