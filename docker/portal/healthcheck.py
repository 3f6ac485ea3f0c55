"""Healthcheck of the web container: GET /healthz must answer 200 "ok". Argument: the port (8000).

Sends the first ALLOWED_HOSTS name as Host, since Django refuses any other host; /healthz is
exempt from the HTTPS redirect (settings.SECURE_REDIRECT_EXEMPT).
"""

import os
import sys
import urllib.request

host = os.environ.get("ALLOWED_HOSTS", "localhost").split(",")[0].strip()
port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"Host": host})
try:
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  # nosec B310: fixed local http URL
        ok = response.status == 200 and response.read().strip() == b"ok"
except OSError as exc:
    print(exc, file=sys.stderr)
    ok = False
sys.exit(0 if ok else 1)
