"""``zasync-zope-worker etc/zope.conf``: a zasync worker beside Zope, with the application booted.

The second way to run jobs of a Zope site (the first is ``worker on`` in a
web instance): a process of its own that boots Zope from an instance's
``zope.conf`` (its databases, ZCML, products: everything a job may use) but
serves no HTTP, and runs the worker that :mod:`zasync.zope.lifecycle`
starts.  ``worker`` is on in this process whatever the file says, so web
and worker processes share one configuration; its other settings
(threads, queues, intervals) come from the same ``<product-config zasync>``
and ``ZASYNC_ZOPE_*`` variables.  The database must be shared (ZEO or
RelStorage): a FileStorage is locked by the web instance.  SIGTERM or
SIGINT stops it gracefully.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from zasync.errors import ZasyncError
from zasync.zope import lifecycle
from zasync.zope import settings as settings_module

log = logging.getLogger("zasync.zope")


def main(argv: Sequence[str] | None = None) -> int:
    """Boot Zope from the given ``zope.conf``, run the worker until a signal; the exit status."""
    parser = argparse.ArgumentParser(prog="zasync-zope-worker", description=__doc__.split("\n")[0])
    parser.add_argument("zope_conf", help="the instance's zope.conf")
    parser.add_argument(
        "--uuid-file",
        default=None,
        help="where this worker keeps its UUID; give each worker beside one instance its own "
        "(default: the instance's uuid-file)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not os.path.isfile(args.zope_conf):
        print(f"zasync-zope-worker: error: no file {args.zope_conf}", file=sys.stderr)
        return 2
    os.environ[f"{settings_module.ENVIRONMENT_PREFIX}WORKER"] = "on"
    if args.uuid_file is not None:
        os.environ[f"{settings_module.ENVIRONMENT_PREFIX}UUID_FILE"] = os.path.abspath(
            args.uuid_file
        )
    try:
        from Zope2.Startup.run import configure_wsgi
    except ImportError:
        print(
            "zasync-zope-worker: error: Zope is not installed (pip install 'zasync[zope]')",
            file=sys.stderr,
        )
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        configure_wsgi(args.zope_conf)
        import Zope2

        Zope2.startup_wsgi()  # opens the databases and loads the ZCML: the worker starts
    except ZasyncError as error:
        print(f"zasync-zope-worker: error: {error}", file=sys.stderr)
        return 2
    if lifecycle.running() is None:
        print(
            "zasync-zope-worker: error: no worker started: include zasync.zope's ZCML "
            '(<include package="zasync.zope" />) in the instance',
            file=sys.stderr,
        )
        return 2
    log.info("zasync: worker beside Zope, from %s; SIGTERM stops it", args.zope_conf)
    stop.wait()
    grace = settings_module.load().grace
    return 0 if lifecycle.stop(grace) else 1


if __name__ == "__main__":
    sys.exit(main())
