"""gunicorn settings of the web container (docker-compose.yml)."""

import multiprocessing

bind = "0.0.0.0:8000"
workers = min(2 * multiprocessing.cpu_count() + 1, 8)
# Longer than the portal's own 3 s Orthanc timeout so a slow Orthanc gives a page, not a kill.
timeout = 60
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
# Only nginx talks to gunicorn; it is the one that sets X-Forwarded-*.
forwarded_allow_ips = "*"
