"""The permission matrix: for every named URL of the portal, the status each role gets.

Each app keeps its rows in a module here (``portal.py``, ``deployments.py``, …) as
``MATRIX = {url_name: Row(...)}``; tests/test_permission_matrix.py merges them and fails when
a URL of the portal has no row. Statuses: 200 (or 302 where the page redirects after acting),
302 to the login page for anonymous visitors, 403 for a signed-in role without the permission.
"""

from dataclasses import dataclass, field


@dataclass
class Row:
    admin: int
    scheduler: int
    viewer: int
    anonymous: int = 302
    method: str = "get"
    kwargs: dict = field(default_factory=dict)  # names of objects made by the test's world fixture
    data: dict = field(default_factory=dict)


def G(admin=200, scheduler=403, viewer=403, **kw):
    """A page: GET."""
    return Row(admin, scheduler, viewer, **kw)


def P(admin=302, scheduler=403, viewer=403, **kw):
    """An action: POST."""
    return Row(admin, scheduler, viewer, method="post", **kw)
