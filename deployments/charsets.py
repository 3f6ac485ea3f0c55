"""Which character set each worklist station receives, and so which letters it can be sent.

Orthanc converts every worklist answer to its one ``DefaultEncoding``, whatever the ``.wl`` file or
the machine's query says (measured on 1.10.1 and 1.12.7, with the classic plugin and the portal's
worklist server: ``Müller^Zoë`` leaves as ISO_IR 100 bytes under Latin1 from a Latin-1 file and from
a UTF-8 file alike, as ISO_IR 192 under Utf8; under Latin1 ``Ł`` is dropped). A machine reads the
bytes in the character sets it knows: a Latin-1-only machine given UTF-8 shows ``MÃ¼ller``.

So a deployment sends one encoding to all its stations, and a station can be sent only the letters
that this encoding carries *and* the station shows. Automatic picks the encoding every querying
station reads: UTF-8 while they all read UTF-8, Latin-1 as soon as one shows only Latin-1 (a UTF-8
station reads an answer labelled ISO_IR 100 correctly; a Latin-1 station cannot read UTF-8). ASCII
stations do not narrow the choice: they are sent ASCII letters only, the same bytes in every
encoding. (A second worklist listener per character set was measured too; see bench/worklists.py,
part ``charsets``, for why a deployment keeps one.)

Pure, except the registry through which the worklists app checks scheduled entries.
"""

from dataclasses import dataclass

AUTO = "auto"
UTF8, LATIN1, ASCII = "ISO_IR 192", "ISO_IR 100", "ISO_IR 6"
CHARSET_OF = {"Utf8": UTF8, "Latin1": LATIN1, "Ascii": ASCII}  # Orthanc's DefaultEncoding → DICOM
NAMES = {UTF8: "UTF-8", LATIN1: "Latin-1", ASCII: "ASCII"}
# A station that shows a character set also reads the narrower ones.
_WIDTH = {ASCII: 0, LATIN1: 1, UTF8: 2}


def automatic(charsets) -> str:
    """The DefaultEncoding that every station showing one of ``charsets`` reads."""
    return "Latin1" if LATIN1 in set(charsets) else "Utf8"


def resolve(setting: str, charsets) -> str:
    """The DefaultEncoding Orthanc is given: the setting, or the automatic choice."""
    return automatic(charsets) if setting == AUTO else setting


def received(station_charset: str, encoding: str) -> str:
    """The character set whose letters reach a station showing ``station_charset`` intact, when
    Orthanc sends ``encoding``: the narrower of the two, or only ASCII when the station cannot
    read the bytes Orthanc sends beyond ASCII (UTF-8 bytes read as Latin-1)."""
    served = CHARSET_OF[encoding]
    station_charset = station_charset if station_charset in _WIDTH else UTF8
    return served if _WIDTH[served] <= _WIDTH[station_charset] else ASCII


@dataclass
class Service:
    """How one querying station is served."""

    aet: str
    name: str
    shows: str  # the station's character set
    receives: str  # the letters that reach it intact
    sent: str  # Orthanc's DefaultEncoding

    @property
    def full(self) -> bool:
        return self.receives == self.shows

    @property
    def garbled(self) -> bool:
        """Orthanc sends bytes this station misreads beyond ASCII (UTF-8 to a Latin-1 machine)."""
        return _WIDTH[CHARSET_OF[self.sent]] > _WIDTH[self.shows]

    @property
    def sentence(self) -> str:
        shows, receives = NAMES[self.shows], NAMES[self.receives]
        if self.full:
            return f"served correctly: receives {NAMES[CHARSET_OF[self.sent]]} answers and shows every {shows} letter"
        if self.garbled:
            return (
                f"receives {NAMES[CHARSET_OF[self.sent]]} answers, which a {shows} machine misreads beyond ASCII: "
                f"names for it are limited to {receives} letters"
            )
        return f"receives {NAMES[CHARSET_OF[self.sent]]} answers: names for it are limited to {receives} letters"


def services(setting: str, stations) -> list[Service]:
    """One ``Service`` per querying station (objects with aet, name, charset, allow_find_worklist)."""
    querying = [s for s in stations if s.allow_find_worklist]
    encoding = resolve(setting, [s.charset for s in querying])
    return [Service(s.aet, s.name, s.charset, received(s.charset, encoding), encoding) for s in querying]


def reason(setting: str, stations) -> str:
    """Why the deployment sends what it sends, in one sentence for the settings page and messages."""
    querying = [s for s in stations if s.allow_find_worklist]
    encoding = resolve(setting, [s.charset for s in querying])
    name = NAMES[CHARSET_OF[encoding]]
    if setting != AUTO:
        return f"this deployment's worklist character set is set to {name}"
    latin = [s.aet for s in querying if s.charset == LATIN1]
    if latin:
        return f"this deployment sends {name} because {', '.join(latin)} {'shows' if len(latin) == 1 else 'show'} only Latin-1"
    return f"this deployment sends {name}: every station that queries it reads UTF-8"


# Checks that a change of the stations or of the setting leaves every scheduled entry sendable:
# callables (deployment, setting, stations) → list of problem sentences. The worklists app
# registers its own (imports run worklists → deployments only).
_entry_checks = []


def register_entry_check(check):
    if check not in _entry_checks:
        _entry_checks.append(check)


def entry_problems(deployment, setting, stations) -> list[str]:
    if deployment is None or deployment.pk is None:
        return []
    return [problem for check in _entry_checks for problem in check(deployment, setting, stations)]
