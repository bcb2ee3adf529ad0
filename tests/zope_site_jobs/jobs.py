"""Jobs the views put: they change content as the user who put them."""

from __future__ import annotations

from typing import Any

from AccessControl.SecurityManagement import getSecurityManager
from zope.globalrequest import getRequest


def add_folder(context: Any, folder_id: str) -> str:
    """Adds a folder in ``context`` and notes on it who made it and its URL, as the job saw them."""
    context.manage_addFolder(folder_id)
    folder = context[folder_id]
    folder.manage_addProperty("made_by", getSecurityManager().getUser().getId(), "string")
    folder.manage_addProperty("url_seen", folder.absolute_url(), "string")
    folder.manage_addProperty("request_seen", str(getRequest() is not None), "string")
    return folder.absolute_url()


def count_up_slowly(context: Any, marker: str, seconds: float) -> int:
    """Adds one to the ``count`` property of ``context``, notes its start in ``marker``.

    Its first run (``marker`` did not exist) then waits ``seconds``.

    Killed in the middle, the worker commits nothing: the count goes up once per run that
    finished, whichever worker finished it.
    """
    import os
    import time

    first = not os.path.exists(marker)
    with open(marker, "a") as out:
        out.write("started\n")
    count = int(context.getProperty("count", 0)) + 1
    if context.hasProperty("count"):
        context.manage_changeProperties(count=count)
    else:
        context.manage_addProperty("count", count, "int")
    if first:  # only the first run is slow: the one a test kills
        time.sleep(seconds)
    return count


def add_folder_committing_on_the_way(context: Any, folder_id: str) -> str:
    """Adds a folder, commits, then notes who it runs as and its URL: as after a long job's commit."""
    import transaction

    context.manage_addFolder(folder_id)
    transaction.commit()
    folder = context[folder_id]
    folder.manage_addProperty("made_by", getSecurityManager().getUser().getId(), "string")
    folder.manage_addProperty("url_seen", folder.absolute_url(), "string")
    folder.manage_addProperty("request_seen", str(getRequest() is not None), "string")
    return folder.absolute_url()
