"""`browser-broker`: run the daemon, or find the browser it would use."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pydantic import ValidationError


def _serve(args: argparse.Namespace) -> int:
    from broker.common import logs
    from broker.daemon.server import serve, write_port_file
    from broker.runtime.settings import load_settings

    overrides = {
        "listen": args.listen,
        "capacity": args.capacity,
        "queue_limit": args.queue_limit,
        "warm_pool_size": args.warm_pool_size,
        "warm_pools": [_warm_pool(spec) for spec in args.warm_pool] if args.warm_pool else None,
        "memory_budget_mb": args.memory_budget_mb,
        "engines": args.engines.split(",") if args.engines else None,
        "default_engine": args.default_engine,
        "default_ttl_s": args.default_ttl,
        "max_ttl_s": args.max_ttl,
        "shutdown_grace_s": args.shutdown_grace,
        "drain_timeout_s": args.drain_timeout,
        "prometheus_port": args.prometheus_port,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "cluster_url": args.cluster,
        "cluster_advertise": args.advertise,
    }
    try:
        settings = load_settings(args.config, **overrides)
    except (ValidationError, FileNotFoundError) as exc:
        print(f"browser-broker: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format, settings.redact_urls)
    on_ready = write_port_file(args.port_file) if args.port_file else None
    asyncio.run(serve(settings, on_ready=on_ready))
    return 0


def _warm_pool(spec: str) -> dict[str, object]:
    """ENGINE/ISOLATION[+ATTACH]=SIZE[:MAX_SIZE], e.g. firefox/browser=2:8,
    chromium/browser+cdp=1 or firefox/browser+playwright=1 (checked by the settings)."""
    pair, _, sizes = spec.partition("=")
    pair, _, attach = pair.partition("+")
    engine, _, isolation = pair.partition("/")
    size, _, ceiling = sizes.partition(":")
    pool: dict[str, object] = {"engine": engine, "isolation": isolation or "context", "size": size}
    if ceiling:
        pool["max_size"] = ceiling
    if attach:
        pool["attach"] = attach
    return pool


def _find_browser(args: argparse.Namespace) -> int:
    from broker.engines.discovery import BrowserNotFound, find_browser, playwright_managed

    try:
        exe = find_browser(
            args.kind, args.path, None if args.path else playwright_managed(args.kind)
        )
    except BrowserNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    print(exe.describe())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="browser-broker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the broker daemon")
    serve.add_argument("--config", type=Path, help="TOML settings file (keys as in BROKER_* vars)")
    serve.add_argument(
        "--listen", help="host:port to bind (default 127.0.0.1:50051; port 0 picks one)"
    )
    serve.add_argument("--capacity", type=int, help="maximum concurrent leases")
    serve.add_argument("--queue-limit", type=int, help="Acquire calls allowed to wait")
    serve.add_argument(
        "--warm-pool-size", type=int, help="ready sessions kept for the default engine"
    )
    serve.add_argument(
        "--warm-pool",
        action="append",
        metavar="ENGINE/ISOLATION[+ATTACH]=SIZE[:MAX]",
        help="a warm pool, e.g. firefox/browser=2:8; attachable browsers with +ATTACH: "
        "chromium/browser+cdp=1, chromium/browser+playwright=1, firefox/browser+playwright=1, "
        "firefox/browser+bidi=1 (repeatable; replaces warm_pools)",
    )
    serve.add_argument(
        "--memory-budget-mb", type=float, help="estimated MiB for leases and warm sessions"
    )
    serve.add_argument(
        "--engines", help="comma-separated engines to enable (chromium,firefox,camoufox)"
    )
    serve.add_argument("--default-engine", help="engine for requests that name none")
    serve.add_argument("--default-ttl", type=float, help="lease TTL in seconds when none is asked")
    serve.add_argument("--max-ttl", type=float, help="largest TTL a client may ask for, seconds")
    serve.add_argument(
        "--drain-timeout",
        type=float,
        help="on SIGTERM, seconds leases may go on before they end drained (0: no drain)",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        help="seconds Runs still running at the drain's deadline get to finish",
    )
    serve.add_argument(
        "--prometheus-port", type=int, help="serve metrics on 127.0.0.1:PORT/metrics"
    )
    serve.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument("--log-format", choices=["json", "text"])
    serve.add_argument("--cluster", metavar="REDIS_URL", help="run as a node of this cluster")
    serve.add_argument("--advertise", help="host:port other cluster nodes reach this one at")
    serve.add_argument("--port-file", type=Path, help="write the bound port here once serving")
    serve.set_defaults(func=_serve)

    find = sub.add_parser("find-browser", help="print the browser executable the broker would use")
    find.add_argument("kind", choices=["chromium", "firefox"])
    find.add_argument("--path", help="an explicit executable to check")
    find.set_defaults(func=_find_browser)

    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
