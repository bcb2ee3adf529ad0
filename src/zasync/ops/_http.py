"""What both HTTP servers (the dashboard and a worker's live view) check and send.

* The ``Host`` header must name the address the server is bound to,
  ``localhost``, ``127.0.0.1`` or ``[::1]`` with the server's port, or a
  name configured for a reverse proxy (``zasync web --allowed-host``).
  Anything else is refused with 421: a web page on another site that
  rebinds its DNS name to 127.0.0.1 (DNS rebinding) sends its own name.
* Every response forbids framing, sniffing and referrers, and carries a
  Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Iterable

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")

# Pages name their own inline script and style with a per-response nonce.
PAGE_CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# JSON and metrics need nothing at all.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

MISDIRECTED = 421
MISDIRECTED_BODY = "this server does not answer to that Host name\n"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_hosts(bound_host: str, port: int, names: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` values a server bound to ``bound_host:port`` answers.

    Each of the bound address and the loopback names with the port (and
    without it on port 80); each configured name as given, and, when it has
    no port, with any port (:func:`host_allowed` handles that).
    """
    allowed = set()
    for host in (bound_host, *LOOPBACK_NAMES):
        host = _bracketed(host.lower())
        allowed.add(f"{host}:{port}")
        if port == 80:
            allowed.add(host)
    allowed.update(name.strip().lower() for name in names if name.strip())
    return frozenset(allowed)


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """True if a request's ``Host`` header is one of ``allowed``.

    A configured name without a port (``dash.example.com``) also matches
    that name with any port, as a reverse proxy may send either.
    """
    if not host:
        return False
    host = host.strip().lower()
    if host in allowed:
        return True
    name, _, port = host.rpartition(":")
    return bool(name) and port.isdigit() and name in allowed
