"""`python -m infra.google_standin --port N`: serve until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading

from . import logs
from .server import start_standin

log = logging.getLogger("google_standin.main")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Google Calendar API v3 stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--option", action="append", default=[], metavar="NAME=JSON",
                        help="StandinOptions field, e.g. --option push_retry_base=0.01")
    args = parser.parse_args(argv)
    logs.configure()
    options = {}
    for item in args.option:
        name, _, value = item.partition("=")
        try:
            options[name] = json.loads(value)
        except ValueError:
            options[name] = value
    handle = start_standin(args.host, args.port, **options)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("serving", extra={"url": handle.base_url, "api_endpoint": handle.api_endpoint,
                               "token_uri": handle.token_uri})
    stop.wait()
    handle.stop()
    log.info("stopped")


if __name__ == "__main__":
    main()
