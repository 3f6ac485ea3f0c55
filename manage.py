#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - loads the settings, which check the secrets
    except ImproperlyConfigured as exc:
        # One clear line (which variable, how to make one), not a traceback.
        sys.exit(f"Configuration error: {exc}")
    if settings.LOCAL_STATE_PRIVATE:
        # The local install (make run): everything this command and the processes it starts
        # create (database, WAL, Redis and Orthanc files under var/) is private to this user.
        os.umask(0o077)
    execute_from_command_line(sys.argv)
