"""Run one service: python -m shop SERVICE [--port N] [--data-dir DIR] [--version V]."""

from __future__ import annotations

import argparse
import os

import uvicorn

from .config import SERVICES, load_settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m shop", description=__doc__)
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--version", help="label shown in X-Served-By (e.g. blue, green)")
    args = parser.parse_args()
    overrides = {"service": args.service}
    for name in ("host", "port", "data_dir", "version"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    settings = load_settings(overrides)
    os.environ["SHOP_SERVICE"] = settings.service

    # Imported here, after SHOP_SERVICE is set; the gateway has its own app (it serves no module).
    if settings.service == "gateway":
        from .gateway import create_gateway as create_app
    else:
        from .api import create_app

    app = create_app(settings)
    # log_config=None keeps our JSON logging; the access log is written by our middleware.
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
