"""The worker: consumes frame jobs from Redis Streams, runs the pipeline, publishes results."""
