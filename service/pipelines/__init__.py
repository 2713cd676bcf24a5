"""Concrete ``FramePipeline`` implementations (see ``service.pipeline``)."""
