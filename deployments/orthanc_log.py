"""Pure: the cause of a failed start, read from Orthanc's log, as a sentence for the admin.

Orthanc writes one line per error (``E1201 15:20:44.386338 OrthancException.cpp:58] …``; from
1.12 with the thread's name before the file). The last error that is not a consequence of an
earlier one names the cause; the known ones are said in plain words with what to do.
"""

import re

_ERROR_LINE = re.compile(r"^E\d{4} [\d:.]+ .*?\] (?P<message>.*)$")
# Lines Orthanc prints while it stops because of an earlier error: never the cause.
_CONSEQUENCES = ("ServerContext::Stop() should be invoked manually", "Uncaught exception, stopping now")
PLUGIN_PACKAGES = {
    "libModalityWorklists.so": "orthanc",
    "libOrthancPython.so": "orthanc-python",
    "libOrthancDicomWeb.so": "orthanc-dicomweb",
    "libOrthancPostgreSQLIndex.so": "orthanc-postgresql",
}
_KNOWN = [
    (
        re.compile(r"TCP port of the DICOM server is privileged or already in use.*?\(port = (\d+)\)"),
        lambda m: (
            f"the DICOM port {m[1]} is already in use by another program (or is below 1024): "
            "choose another DICOM port, or stop the program that holds it"
        ),
    ),
    (
        re.compile(r"TCP port of the HTTP server is privileged or already in use.*?\(port = (\d+)\)"),
        lambda m: (
            f"the HTTP port {m[1]} is already in use by another program (or is below 1024): "
            "choose another HTTP port, or stop the program that holds it"
        ),
    ),
    (
        re.compile(r"Inexistent path to plugins?: (\S+)"),
        lambda m: f"the plugin {m[1]} is missing: {plugin_advice(m[1])}",
    ),
]


def plugin_advice(path: str) -> str:
    package = PLUGIN_PACKAGES.get(path.rsplit("/", 1)[-1])
    if package:
        return f"install the Debian package {package} on the Orthanc host, or turn the feature off"
    return "install it on the Orthanc host, or remove it from the configuration"


def error_lines(text: str) -> list[str]:
    messages = []
    for line in text.splitlines():
        match = _ERROR_LINE.match(line.strip())
        if match and not any(noise in line for noise in _CONSEQUENCES):
            messages.append(match["message"].strip())
    return messages


def failure_reason(text: str) -> str:
    """The cause of the failure in ``text`` (the log since the push began), or ""."""
    errors = error_lines(text)
    for message in reversed(errors):
        for pattern, say in _KNOWN:
            match = pattern.search(message)
            if match:
                return say(match)
    return f"Orthanc's last error: {errors[-1][:300]}" if errors else ""
