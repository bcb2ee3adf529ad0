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
