"""The gateway application factory: ``create_app(settings)``.

Routes: ``/v1/videos`` (uploads), ``/v1/streams`` (WebSocket), ``/v1/pulls`` (the gateway pulls a URL), ``/healthz``, ``/readyz``,
``/metrics``, and ``/docs``, ``/redoc``, ``/openapi.json`` unless API keys are set
(``docs_open`` serves them anyway). Serve it with ``posestream.service.gateway.http.uvicorn_options``.
The gateway never imports torch; it decodes uploads with PyAV, reads WebSocket image
headers only (``posestream.service.frames``) and talks to the workers only through ``posestream.service.messages``
over Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from posestream.service.gateway.deps import Ctx, GatewayContext
from posestream.service.gateway.errors import error_body, install_error_handlers
from posestream.service.gateway.metrics import GatewayMetrics
from posestream.service.gateway.pulls import PullManager
from posestream.service.gateway.pulls import router as pulls_router
from posestream.service.gateway.pulls import ws_router as pulls_ws_router
from posestream.service.gateway.streams import router as streams_router
from posestream.service.gateway.upload_manager import UploadManager, janitor
from posestream.service.gateway.uploads import router as uploads_router
from posestream.service.messages import JOBS_GROUP, RedisKeys
from posestream.service.redis_types import awaited
from posestream.service.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new gateway app with its own Redis client, metrics registry and upload manager."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = aioredis.Redis.from_url(settings.redis_url)
        ctx = GatewayContext(settings, client, RedisKeys(settings.redis_prefix), GatewayMetrics(), None)
        ctx.uploads = uploads = UploadManager(ctx)
        app.state.ctx = ctx
        app.state.pulls = pulls = PullManager(ctx)
        jan = asyncio.create_task(janitor(uploads, client, settings.video_ttl_s))
        # Uploads whose gateway died (this one, before a restart) resume from here.
        resumer = asyncio.create_task(uploads.resume_loop(), name="upload-resumer")
        try:
            yield
        finally:
            resumer.cancel()
            jan.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resumer  # before the shutdown, so it cannot start a task after it
            await pulls.shutdown()
            await uploads.shutdown()
            await client.aclose()

    # With API keys, the route list is not public unless docs_open says so.
    docs = not settings.api_keys or settings.docs_open
    app = FastAPI(
        title="posestream",
        version="1",
        summary="Multi-person pose tracking for uploaded clips and live WebSocket streams.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    install_error_handlers(app)
    app.include_router(uploads_router)
    app.include_router(streams_router)
    app.include_router(pulls_router)
    app.include_router(pulls_ws_router)

    @app.get("/healthz", tags=["ops"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Redis answers and a worker heartbeat is fresh")
    async def readyz(ctx: Ctx) -> JSONResponse:
        try:
            await awaited(ctx.redis.ping())
            alive = await ctx.redis.zcount(
                ctx.keys.workers, time.time() - ctx.settings.heartbeat_ttl_s, "+inf"
            )
        except aioredis.RedisError as exc:
            return JSONResponse(
                error_body("redis_unavailable", f"Redis does not answer: {exc}"), status_code=503
            )
        if alive == 0:
            return JSONResponse(
                error_body(
                    "no_workers", f"no worker heartbeat in the last {ctx.settings.heartbeat_ttl_s:g} s"
                ),
                status_code=503,
            )
        return JSONResponse({"status": "ready", "workers": int(alive)})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics(ctx: Ctx) -> Response:
        m = ctx.metrics
        with contextlib.suppress(aioredis.RedisError):
            pipe = ctx.redis.pipeline(transaction=False)
            pipe.xlen(ctx.keys.jobs)
            pipe.zcount(ctx.keys.workers, time.time() - ctx.settings.heartbeat_ttl_s, "+inf")
            depth, alive = await pipe.execute()
            m.queue_depth.set(depth)
            m.workers_alive.set(alive)
            with contextlib.suppress(aioredis.ResponseError):
                info = await ctx.redis.xpending(ctx.keys.jobs, JOBS_GROUP)
                m.jobs_pending.set(int(info["pending"]))
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    return app
