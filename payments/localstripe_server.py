"""Run localstripe (the stateful Stripe fake used in development and tests) on 127.0.0.1, without its disk dump.

Its own CLI binds every interface and pickles its whole store to /tmp after each request, which slows it down
as it grows; neither suits a laptop or CI.
"""

import argparse
import logging

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    resources.store.dump_to_disk = lambda: None
    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
