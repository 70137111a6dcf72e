"""The local mailbox: in development, read what the shop would have emailed."""

from __future__ import annotations

import ipaddress
import re

from flask import Blueprint, abort, current_app, render_template, request

from shop.access import public
from shop.notifications.services import recent_messages

bp = Blueprint("notifications", __name__)


def _from_this_machine() -> bool:
    """The request comes from the loopback address (127.0.0.0/8 or ::1). The mailbox holds staff
    password links, so nobody else on the network may read it, even in development."""
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket
    return address.is_loopback and _named_as_this_machine()


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
_PORT = re.compile(r":[0-9]*\Z")


def _named_as_this_machine() -> bool:
    """The browser asked for a loopback name (any port). A web page the developer visits can make
    its own name point at 127.0.0.1 (DNS rebinding) and read the answer from the developer's browser:
    its requests come from this machine but name the attacker's host."""
    return _PORT.sub("", request.host.lower()) in LOOPBACK_HOSTS


@bp.get("/dev/mailbox")
@public
def mailbox() -> str:
    """:raise 404: outside development (DEV_MAILBOX off, which production enforces), or to any
    visitor not on this machine or not asking for it by a loopback name: the page does not exist
    for them."""
    if not current_app.config.get("DEV_MAILBOX") or not _from_this_machine():
        abort(404)
    return render_template("notifications/mailbox.html", messages=recent_messages())
