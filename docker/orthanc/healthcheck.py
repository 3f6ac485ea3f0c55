"""Healthcheck of the orthanc container: its REST port answers HTTP.

Any HTTP answer counts (401/403 without credentials is normal); a refused connection does not.
The image's own probe is not used: it logs in as the first registered user, whom the portal's Lua
filter may not allow on /changes.
"""

import sys
import urllib.error
import urllib.request

try:
    urllib.request.urlopen("http://127.0.0.1:8042/system", timeout=5)  # noqa: S310  # nosec B310: fixed local http URL
except urllib.error.HTTPError:
    pass
except OSError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
