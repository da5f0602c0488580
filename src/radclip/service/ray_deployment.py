"""Serving ``create_app()`` on Ray Serve: N reader replicas, one writer replica, health from readiness.

Each replica builds the same app as ``radclip serve`` (``create_app(settings)``; the lifespan loads
each model once per replica). Replicas share the database, the Redis text cache and the persisted
index under ``$RADCLIP_HOME/index``, which must therefore be storage every node sees.

* **One writer.** Ingest (``POST``/``DELETE`` under ``/api/v1/studies``) is forwarded by every
  reader to the single ``RadclipWriter`` replica, because the index file is rewritten whole and two
  processes saving it would lose each other's additions.
* **Readers converge.** Before each request a reader stats the index manifest (written last, by an
  atomic rename, after the checksummed index file); when it changed, the reader loads the new file
  (checksum verified) and swaps it in. A torn read fails the checksum and is retried next request.
* **Prepared once.** :func:`prepare_shared_state` seeds the condition registry and builds (or
  loads) the index in the deploying process before any replica starts, so replicas warm-start
  from disk instead of racing to build the same index.

Ray is imported here only; nothing else in radclip imports this module (``--ray`` paths only).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

log = logging.getLogger(__name__)
WRITE_PREFIX = "/api/v1/studies"  # routes that change the index: forwarded to the one writer
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READER, WRITER = "RadclipService", "RadclipWriter"  # Serve deployment names
REPLICA_HEADER = "x-radclip-replica"  # which replica answered (readers and the writer), for operators and tests


@dataclass(frozen=True)
class RayServeConfig:
    """How the service is laid out on Ray Serve (the ``serve:`` block of ``deploy/ray_serve.yaml``)."""

    replicas: int = 2  # reader replicas when autoscaling is off
    min_replicas: int = 0  # autoscaling lower bound; autoscaling is on when max_replicas > 0
    max_replicas: int = 0  # autoscaling upper bound (0: fixed ``replicas``)
    target_ongoing_requests: float = 4.0  # autoscaler's target of in-flight requests per replica
    max_ongoing_requests: int = 16  # a replica takes at most this many at once; the proxy queues the rest
    health_check_period_s: float = 10.0  # how often each replica's check_health (= /readyz) runs
    health_check_timeout_s: float = 30.0  # a check slower than this counts as failed
    graceful_shutdown_wait_loop_s: float = 2.0  # on scale-down, poll this often for in-flight requests
    graceful_shutdown_timeout_s: float = 30.0  # then stop after at most this long (lifespan shutdown runs)
    num_cpus: float = 1.0  # Ray CPUs reserved per replica
    num_gpus: float = 0.0  # Ray GPUs per replica (e.g. 1 on a GPU node; 0.5 packs two per GPU)
    # EveryNode: a proxy per node, all on http_port, with a load balancer in front. HeadOnly (one host running
    # several nodes, as the tests do) also needs RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING=0 in the cluster's
    # environment, or the one proxy sends every request to the replicas on its own node.
    proxy_location: str = "EveryNode"
    http_host: str = "127.0.0.1"  # the Serve HTTP proxy's bind address
    http_port: int = 8000  # the Serve HTTP proxy's port
    app_name: str = "radclip"
    single_writer: bool = True  # False: every replica writes (only safe with no ingest at all)

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas={self.replicas}: give at least 1 reader replica")
        if self.max_replicas and not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"autoscaling bounds min_replicas={self.min_replicas} max_replicas={self.max_replicas}: "
                             "need 0 <= min_replicas <= max_replicas")  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RayServeConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data or {}) - known)
        if unknown:
            import difflib

            hints = [f"{u!r} (did you mean {difflib.get_close_matches(u, known, n=1)})" for u in unknown]
            raise ValueError(f"unknown Ray Serve option(s): {', '.join(hints)}; known: {', '.join(sorted(known))}")
        return cls(**(data or {}))

    def reader_options(self) -> dict[str, Any]:
        """``serve.deployment(...).options(**this)`` for the reader deployment."""
        opts = self._common()
        if self.max_replicas:
            opts["autoscaling_config"] = {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                                          "initial_replicas": max(self.min_replicas, min(self.replicas, self.max_replicas)),
                                          "target_ongoing_requests": self.target_ongoing_requests}  # fmt: skip
        else:
            opts["num_replicas"] = self.replicas
        return opts

    def writer_options(self) -> dict[str, Any]:
        return {**self._common(), "num_replicas": 1}

    def _common(self) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if k.startswith("RADCLIP_")}  # replicas on other nodes see the same
        return {"max_ongoing_requests": self.max_ongoing_requests, "health_check_period_s": self.health_check_period_s,
                "health_check_timeout_s": self.health_check_timeout_s,
                "graceful_shutdown_wait_loop_s": self.graceful_shutdown_wait_loop_s,
                "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
                "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                                      "runtime_env": {"env_vars": env}}}  # fmt: skip


class IndexFollower:
    """Keeps a reader's in-memory index equal to the persisted one (see the module docstring)."""

    def __init__(self) -> None:
        self._seen: tuple[int, int, int] | None = None
        self._busy = threading.Lock()

    def stale(self, index: Any) -> bool:
        """True when the manifest on disk changed since this replica loaded it (one stat)."""
        if index is None or index.key is None:
            return False
        try:
            st = index.store.paths(index.key)[1].stat()
        except OSError:
            return False
        return (st.st_mtime_ns, st.st_size, st.st_ino) != self._seen

    def sync(self, index: Any) -> bool:
        """Load the persisted index if it changed; True when a new one was swapped in."""
        if not self._busy.acquire(blocking=False):
            return False  # another request of this replica is already loading it
        try:
            st = index.store.paths(index.key)[1].stat()
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
            outcome = index.store.load(index.key, index.config)
            if outcome.index is None:  # written while we read it: the checksum failed; retry next request
                log.info("index %s not reloaded yet (%s)", index.key.slug, outcome.reason)
                return False
            index.index, self._seen = outcome.index, sig  # one reference swap: searches see the old or the new
            log.info("index %s reloaded: %d live images", index.key.slug, outcome.index.live)
            return True
        finally:
            self._busy.release()


class ReplicaRouting:
    """Outermost ASGI layer of a replica: names the replica, follows the index, forwards writes to the writer."""

    def __init__(self, app: Any, replica: str, writer: Any = None, follower: IndexFollower | None = None,
                 max_body: int = 50_000_000) -> None:  # fmt: skip
        self.app, self.replica, self.writer, self.follower, self.max_body = app, replica, writer, follower, max_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.writer is not None and scope["method"] in WRITE_METHODS and scope["path"].startswith(WRITE_PREFIX):
            await self._forward(scope, receive, send)
            return
        state = getattr(scope["app"].state, "radclip", None) if scope.get("app") is not None else None
        index = getattr(state, "index", None)
        if self.follower is not None and self.follower.stale(index):
            from anyio import to_thread

            await to_thread.run_sync(self.follower.sync, index)

        async def named(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (REPLICA_HEADER.encode(), self.replica.encode())]}
            await send(message)

        await self.app(scope, receive, named)

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from radclip.service.problems import problem_response

        body, size, more = [], 0, True
        while more:  # the writer applies the real limits; this only keeps a reader from buffering without bound
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.append(message.get("body", b""))
            size, more = size + len(body[-1]), message.get("more_body", False)
            if size > self.max_body:
                await problem_response(413, "Request body too large", f"the request body is larger than {self.max_body:,} bytes",
                                       "send a smaller image (RADCLIP_MAX_UPLOAD_MB)", "body-too-large")(scope, receive, send)  # fmt: skip
                return
        request = {key: scope.get(key) for key in ("method", "path", "query_string", "headers", "client")}
        try:
            reply = await self.writer.handle_write.remote({**request, "body": b"".join(body)})
        except Exception as exc:  # writer replica down or restarting: say so, do not pretend the ingest happened
            log.warning("ingest writer unavailable: %s", exc)
            response = problem_response(503, "Ingest writer unavailable", f"the ingest replica did not answer ({type(exc).__name__})",
                                        "retry in a few seconds; `serve status` shows the radclip-writer application",
                                        "writer-unavailable")  # fmt: skip
            response.headers["Retry-After"] = "5"
            await response(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": reply["status"], "headers": reply["headers"]})
        await send({"type": "http.response.body", "body": reply["body"]})


async def call_app(app: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Run one forwarded request through ``app`` in this process; ``{"status", "headers", "body"}``."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http", "root_path": "",
             "method": request["method"], "path": request["path"], "raw_path": request["path"].encode(),
             "query_string": request.get("query_string") or b"", "headers": list(request.get("headers") or []),
             "client": tuple(request["client"]) if request.get("client") else None, "server": ("radclip-writer", 0)}  # fmt: skip
    sent, out = [False], {"status": 500, "headers": [], "body": b""}

    async def receive() -> dict[str, Any]:
        if sent[0]:
            return {"type": "http.disconnect"}
        sent[0] = True
        return {"type": "http.request", "body": request["body"], "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"], out["headers"] = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out


def readiness_problem(app: Any) -> str | None:
    """What ``/readyz`` would call not ready (None when ready): the replica health check."""
    from radclip.service.database_health import database_status

    state = getattr(getattr(app, "state", None), "radclip", None) if app is not None else None
    if state is None:
        return "the app has not finished starting"
    report = state.readiness()
    access = getattr(app.state, "radclip_access", None)
    database = database_status(access.keys.engine if access is not None else None)
    if report["status"] != "ready":
        return f"/readyz status {report['status']}: load_errors={sorted(report.get('load_errors') or {})}"
    if not database["up"]:
        return f"/readyz: database down ({database.get('reason', 'see the server log')})"
    return None


def replica_class() -> type:
    """The Serve deployment class (built on call, so importing this module does not import Ray)."""
    from ray import serve

    @serve.ingress()
    class RadclipReplica:
        """One replica: ``create_app(settings)`` plus :class:`ReplicaRouting`; ``check_health`` asks readiness.

        ``writer_app`` names the Serve application holding the writer (readers forward ingest to it);
        None for the writer itself.
        """

        def __init__(self, overrides: dict[str, Any], writer_app: str | None = None) -> None:
            from radclip.settings import load_settings

            self.settings, self.writer_app, self.fastapi = load_settings(**overrides), writer_app, None

        def __serve_build_asgi_app__(self) -> Any:
            from radclip.service.app import create_app

            replica = serve.get_replica_context().replica_id.unique_id
            writer = serve.get_deployment_handle(WRITER, app_name=self.writer_app) if self.writer_app else None
            self.fastapi = create_app(self.settings)
            self.fastapi.add_middleware(ReplicaRouting, replica=replica, writer=writer,
                                        follower=IndexFollower() if writer is not None else None,
                                        max_body=int(self.settings.max_upload_mb * 1e6) + 65_536)  # fmt: skip
            return self.fastapi

        async def handle_write(self, request: dict[str, Any]) -> dict[str, Any]:
            return await call_app(self.fastapi, request)

        def check_health(self) -> None:
            problem = readiness_problem(self.fastapi)
            if problem is not None:
                raise RuntimeError(f"radclip replica not ready: {problem}")

    return RadclipReplica


def prepare_shared_state(overrides: dict[str, Any]) -> dict[str, Any]:
    """Migrate the database, seed the registry and build or load the index once, before replicas start.

    Serialised by an exclusive lock file in ``$RADCLIP_HOME`` (the config file's two builders may run at
    once): the second caller finds the index persisted and only loads it.
    """
    import fcntl

    from radclip.settings import load_settings

    settings = load_settings(**overrides)
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / ".ray-prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _prepare(settings)


def _prepare(settings: Any) -> dict[str, Any]:
    from radclip.engine.corpus import corpus_records
    from radclip.service.state import build_state

    state = build_state(settings)
    try:
        if state.load_errors:
            raise RuntimeError(f"models did not load: {state.load_errors}; fix the settings before deploying")
        if state.index is None or not settings.index_on_start:
            return {"index": "not opened (RADCLIP_INDEX_ON_START=false)"}
        report = state.index.open(corpus_records(settings.resolved_corpus))
        return {"index": report.key.slug, "loaded": report.loaded, "live": report.live, "reason": report.reason}
    finally:
        state.close()


def build_writer(overrides: dict[str, Any], config: RayServeConfig) -> Any:
    """The writer application (one replica, no HTTP route: only readers reach it, through a handle)."""
    from ray import serve

    return serve.deployment(replica_class(), name=WRITER).options(**config.writer_options()).bind(overrides)


def build_readers(overrides: dict[str, Any], config: RayServeConfig, writer_app: str | None) -> Any:
    """The reader application behind the HTTP proxy; ``writer_app`` None: every reader writes (no ingest only)."""
    from ray import serve

    opts = config.reader_options()
    return serve.deployment(replica_class(), name=READER).options(**opts).bind(overrides, writer_app)


def app_builder(args: dict[str, Any]) -> Any:
    """``import_path`` of ``deploy/ray_serve.yaml``: ``args: {role: reader|writer, settings: {...}, serve: {...}}``.

    Each builder prepares the shared state first (serialised, so the second only loads), so no replica
    of either application starts before the index is persisted; ``prepare: false`` skips it.
    """
    overrides = dict(args.get("settings") or {})
    config = RayServeConfig.from_dict(args.get("serve"))
    role = args.get("role", "reader")
    if role not in ("reader", "writer"):
        raise ValueError(f"role={role!r}: use 'reader' or 'writer'")
    if args.get("prepare", True):
        log.info("shared state prepared: %s", prepare_shared_state(overrides))
    if role == "writer":
        return build_writer(overrides, config)
    return build_readers(overrides, config, args.get("writer_app", f"{config.app_name}-writer"))


def deploy(address: str, overrides: dict[str, Any], config: RayServeConfig, prepare: bool = True) -> dict[str, Any]:
    """Connect to the cluster at ``address``, start Serve's proxy on the head node and deploy; returns a summary."""
    import ray
    from ray import serve

    summary = prepare_shared_state(overrides) if prepare else {}
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    serve.start(proxy_location=config.proxy_location, http_options={"host": config.http_host, "port": config.http_port})
    writer_app = f"{config.app_name}-writer" if config.single_writer else None
    if writer_app:
        serve.run(build_writer(overrides, config), name=writer_app, route_prefix=None)
    serve.run(build_readers(overrides, config, writer_app), name=config.app_name, route_prefix="/")
    return {**summary, "url": f"http://{config.http_host}:{config.http_port}", "writer_app": writer_app, "config": asdict(config)}
