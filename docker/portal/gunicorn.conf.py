"""gunicorn settings of the web container (docker-compose.yml)."""

import multiprocessing
import os

bind = "0.0.0.0:8000"
workers = min(2 * multiprocessing.cpu_count() + 1, 8)
# Longer than the portal's own 3 s Orthanc timeout so a slow Orthanc gives a page, not a kill.
timeout = 60
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
# X-Forwarded-Proto is believed only from the trusted proxy (nginx), the same list the portal
# believes X-Forwarded-For from (portal.clientip); empty: only from this machine.
forwarded_allow_ips = os.environ.get("TRUSTED_PROXIES") or "127.0.0.1,::1"
