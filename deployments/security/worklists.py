"""What the audit says about the worklist stations: which ones the deployment serves correctly
(Orthanc sends every worklist answer in one encoding, deployments/charsets.py), and scheduled
entries whose letters their station would not receive intact."""

from .. import charsets
from .findings import Finding


def worklist_charset_findings(d, modalities) -> list[Finding]:
    """Which worklist stations the deployment serves correctly: Orthanc sends one encoding to all."""
    if not d.worklists_enabled:
        return []
    services = charsets.services(d.default_encoding, modalities)
    if not services:
        return []
    why = charsets.reason(d.default_encoding, modalities)
    full = [s.aet for s in services if s.full]
    garbled = [s for s in services if s.garbled]
    limited = [s for s in services if not s.full and s not in garbled]
    f = []
    if full:
        f.append(
            Finding(
                "worklist-stations-served",
                "info",
                f"Worklist stations served correctly: {', '.join(full)} ({why}).",
                "Every name scheduled for them reaches them with the letters the front desk typed.",
                "default_encoding",
            )
        )
    for s in garbled:
        sent = charsets.NAMES[charsets.CHARSET_OF[s.sent]]
        f.append(
            Finding(
                "worklist-station-misreads",
                "medium",
                f"{s.aet} shows only {charsets.NAMES[s.shows]} but receives {sent} answers ({why}).",
                f"It shows accented letters garbled (Müller as MÃ¼ller); names for it are limited to "
                f"{charsets.NAMES[s.receives]} letters. Set the worklist character set to Automatic.",
                "default_encoding",
            )
        )
    for s in limited:
        f.append(
            Finding(
                "worklist-station-limited",
                "low",
                f"{s.aet} shows {charsets.NAMES[s.shows]} but receives {charsets.NAMES[s.receives]} answers ({why}).",
                f"A name with letters outside {charsets.NAMES[s.receives]} is refused when scheduled for it.",
                "default_encoding",
            )
        )
    return f


def entry_findings(d, modalities) -> list[Finding]:
    """Scheduled entries whose letters their station would not receive intact (made before the
    stations or the setting changed)."""
    problems = charsets.entry_problems(d, d.default_encoding, modalities)
    if not problems:
        return []
    return [
        Finding(
            "worklist-entries-garbled",
            "medium",
            "Scheduled entries have letters their station would not receive intact.",
            " ".join(problems),
            "default_encoding",
        )
    ]
