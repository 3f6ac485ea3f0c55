"""What each Orthanc release accepts, in one place (pure: no I/O).

The portal reads a deployment's version from ``/system`` (``Deployment.last_version``) and asks
this module which configuration options, option values and REST routes that version accepts,
which defaults it applies to absent keys, and which published flaws it carries. Every fact
names the release that brought it, checked in Orthanc's NEWS and sources (and against the
Debian 12 and 13 packages, Orthanc 1.10.1 and 1.12.7).
"""

import re
from dataclasses import dataclass

# Debian 12's Orthanc: the oldest release the portal runs against (DESIGN.md).
OLDEST_SUPPORTED = (1, 10, 1)

# Option → the release that first reads it. Older releases ignore the key.
OPTION_SINCE = {
    "DeidentifyLogs": (1, 8, 2),  # NEWS 1.8.2
    "DeidentifyLogsDicomVersion": (1, 8, 2),  # NEWS 1.8.2
    "DicomAlwaysAllowFindWorklist": (1, 10, 0),  # NEWS 1.10.0 (with the modalities' AllowFindWorklist)
    "RestApiWriteToFileSystemEnabled": (1, 12, 0),  # NEWS 1.12.0: /instances/…/export off by default
}

# Option → value → the release that first accepts it. Orthanc refuses to start with a value its
# release does not know ("Unknown specific version of the DICOM standard").
VALUE_SINCE = {
    "DeidentifyLogsDicomVersion": {
        "2008": (1, 8, 2),  # Enumerations.cpp StringToDicomVersion at Orthanc-1.8.2
        "2017c": (1, 8, 2),
        "2021b": (1, 9, 4),  # NEWS 1.9.4: anonymization after PS 3.15-2021b
        "2023b": (1, 12, 1),  # NEWS 1.12.1; 1.10.1 refuses to start with it; Debian 13's orthanc.json sets it
    },
}

# Option → [(release, default from that release on)], newest first: Orthanc's default for an absent key.
DEFAULT_SINCE = {
    "DeidentifyLogsDicomVersion": [((1, 12, 1), "2023b"), ((0, 0, 0), "2021b")],  # ServerContext.cpp
}

# REST features the portal may use → the release that brought them.
ROUTE_SINCE = {
    "labels": (1, 12, 0),  # NEWS 1.12.0: /{resource}/{id}/labels, /tools/labels, "Labels" in /tools/find
    # GET /changes?type=… (and ?to=…): from 1.12.5 and only on an index that reports
    # Capabilities.HasExtendedChanges in /system; older releases ignore the argument and list every change.
    "changes-type-filter": (1, 12, 5),
}


@dataclass(frozen=True)
class Vulnerability:
    id: str
    cves: str
    fixed_in: tuple
    severity: str
    summary: str


# Published flaws by the release that fixes them.
VULNERABILITIES = [
    Vulnerability(
        "cve-2025-0896",
        "CVE-2025-0896",
        (1, 5, 8),
        "critical",
        "before 1.5.8, turning remote access on did not turn authentication on: the archive may be open to anyone",
    ),
    Vulnerability(
        "cve-2026-5437-5445",
        "CVE-2026-5437 to CVE-2026-5445",
        (1, 12, 11),  # Orthanc 1.12.11 (2026-04-14); CERT/CC: every release up to 1.12.10
        "high",
        "crafted DICOM files and HTTP requests crash Orthanc, leak memory contents into rendered images and "
        "may run code (heap overflows in image decoding, gzip/ZIP bombs, an unbounded Content-Length)",
    ),
]


# The orthancteam/orthanc release docker-compose.yml pins, and the Orthanc inside it: orthanc-builder's
# release notes ("26.4.0: upgraded Orthanc to 1.12.11") and build-matrix.json at tag 26.4.2 ("Orthanc-1.12.11").
DOCKER_IMAGE = "orthancteam/orthanc:26.4.2"
DOCKER_IMAGE_ORTHANC = (1, 12, 11)


def parse_version(text):
    """(major, minor, patch) from Orthanc's version text ("1.12.7"), or None ("mainline", "")."""
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(x) for x in match.groups()) if match else None


def label(number) -> str:
    return ".".join(map(str, number))


@dataclass(frozen=True)
class OrthancVersion:
    """One Orthanc release as the portal knows it: ``OrthancVersion.of(deployment.last_version)``.

    An unknown version (never reached, or a "mainline" build) answers what every supported
    release accepts, so that nothing the portal writes can stop Orthanc from starting.
    """

    text: str
    number: tuple | None

    @classmethod
    def of(cls, text):
        return cls(text or "", parse_version(text))

    @property
    def known(self) -> bool:
        return self.number is not None

    def __str__(self):
        return self.text if self.known else "unknown"

    def at_least(self, release) -> bool:
        # Unknown: judged as the oldest supported release.
        return (self.number or OLDEST_SUPPORTED) >= release

    def accepts_option(self, key) -> bool:
        return self.at_least(OPTION_SINCE.get(key, (0, 0, 0)))

    def accepted_values(self, key) -> list[str]:
        return [value for value, since in VALUE_SINCE[key].items() if self.at_least(since)]

    def refusal(self, key, value) -> str:
        """Why this release refuses the value of an option ("" if it accepts it)."""
        since = VALUE_SINCE.get(key, {}).get(value)
        if since is None or self.at_least(since):
            return ""
        who = f"Orthanc {self.text}" if self.known else "Orthanc's version is not known yet, and Orthanc 1.10.1"
        return f"{who} refuses {value!r} and would not start (accepted from Orthanc {label(since)} on)"

    def default(self, key):
        return next(value for since, value in DEFAULT_SINCE[key] if self.at_least(since))

    def has(self, route) -> bool:
        return self.at_least(ROUTE_SINCE[route])

    @property
    def has_labels(self) -> bool:
        return self.has("labels")

    def has_changes_type_filter(self, system=None) -> bool:
        """``/changes?type=``: the release, and the index (``/system`` Capabilities) when given."""
        if not self.has("changes-type-filter"):
            return False
        return system is None or bool((system.get("Capabilities") or {}).get("HasExtendedChanges"))

    @property
    def export_always_allowed(self) -> bool:
        # Before 1.12.0 /instances/…/export always wrote to the server's disk: no option turned it off.
        return not self.accepts_option("RestApiWriteToFileSystemEnabled")

    def vulnerabilities(self) -> list[Vulnerability]:
        if not self.known:
            return []
        return [v for v in VULNERABILITIES if self.number < v.fixed_in]
