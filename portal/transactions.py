"""Which requests run inside ATOMIC_REQUESTS' transaction: those that may change something.

On SQLite the transaction begins IMMEDIATE (settings.py), which takes the database's only write
lock for as long as the view runs. A page that only reads would make every save wait behind it,
and two pages would wait for each other. So GET, HEAD and OPTIONS run in autocommit (a write they
make, such as a login attempt, commits by itself); POST, PUT, PATCH and DELETE keep one
transaction, so that a model and its audit record are saved together or not at all.
Views that wait on the network or on long work while they answer a POST opt out with
``@transaction.non_atomic_requests`` and open a short ``transaction.atomic()`` for their writes.
"""

from django.db import transaction

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class SafeMethodsOutsideTransactionMiddleware:
    """Calls the view itself for safe methods, before Django wraps it in ATOMIC_REQUESTS' transaction.

    Keep it the last middleware with a process_view: the ones after it would be skipped.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        # Already inside a transaction (a test's): ATOMIC_REQUESTS then only adds a savepoint, and
        # Django REST framework's rollback of a refused request must stay inside that savepoint.
        if request.method in SAFE_METHODS and not transaction.get_connection().in_atomic_block:
            return view_func(request, *view_args, **view_kwargs)
        return None
