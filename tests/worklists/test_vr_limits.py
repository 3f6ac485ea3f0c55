"""Every DICOM value limit the portal checks, at the limit and one past it, and every character it
refuses, written from DICOM PS3.5 §6.2 (Table 6.2-1), not from worklists/vr.py.

Each refusal is checked with its message and its code: the message reaches the front desk (form
field, API error, CSV line), the code lets a client tell the rules apart.
"""

import datetime

import pytest
from django.core.exceptions import ValidationError

from worklists import vr

# PS3.5 Table 6.2-1: the maximum length of one value, and the checks of the portal that apply it.
MAX_LENGTH = {
    "LO": (64, vr.check_lo),
    "SH": (16, vr.check_sh),
    "AE": (16, vr.check_ae),
    "CS": (16, vr.check_cs),
    "UI": (64, vr.check_ui),
}
# A value of n characters that is otherwise valid for the VR.
FILLER = {"LO": "é", "SH": "Z", "AE": "A", "CS": "_", "UI": "1"}
# Control characters: C0, DEL and C1. ESC (0x1B) belongs only to ISO 2022 code extensions, which
# the portal never writes; TAB, LF, FF and CR only to the text VRs (ST, LT, UT) it does not write.
CONTROLS = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))]
TEXT_CHECKS = {"LO": vr.check_lo, "SH": vr.check_sh, "AE": vr.check_ae}


def refusal(check, value):
    with pytest.raises(ValidationError) as error:
        check(value)
    (message,) = error.value.messages
    return message, error.value.error_list[0].code


def filled(name, n):
    return FILLER[name] * n


@pytest.mark.parametrize("name", MAX_LENGTH)
def test_each_length_limit_passes_at_the_limit_and_refuses_one_past_it(name):
    limit, check = MAX_LENGTH[name]
    check(filled(name, limit))
    assert refusal(check, filled(name, limit + 1)) == (
        f"At most {limit} characters (DICOM {name}); this has {limit + 1}.",
        "max_length",
    )


def test_a_person_name_counts_all_its_parts_with_their_carets_against_64():
    name = "A" * 30 + "^" + "B" * 33  # 64
    vr.check_pn(name)
    assert refusal(vr.check_pn, name + "C") == (
        "At most 64 characters (DICOM PN, the whole name with its ^); this has 65.",
        "max_length",
    )
    vr.check_pn_component("D" * 64)
    assert refusal(vr.check_pn_component, "D" * 65) == (
        "At most 64 characters (DICOM PN component); this has 65.",
        "max_length",
    )


def test_a_person_name_has_five_components_at_most():
    vr.check_pn("Family^Given^Middle^Dr^Jr")
    vr.check_pn("Family^^^^")
    assert refusal(vr.check_pn, "A^B^C^D^E^F") == (
        "A DICOM PN has at most 5 parts separated by ^ (family^given^middle^prefix^suffix).",
        "pn_parts",
    )
    assert refusal(vr.check_pn, "^^^^^") == refusal(vr.check_pn, "A^B^C^D^E^F")


@pytest.mark.parametrize("control", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_every_control_character_is_refused_in_every_string_value(control):
    for name, check in TEXT_CHECKS.items():
        assert refusal(check, f"A{control}B") == (
            f"Control characters (tab, line break…) are not allowed in a DICOM {name}.",
            "control",
        )
    expected = ("Control characters (tab, line break…) are not allowed in a DICOM PN.", "control")
    assert refusal(vr.check_pn_component, f"Mü{control}ller") == expected
    assert refusal(vr.check_pn, f"Müller^Zo{control}ë") == expected


def test_the_printable_neighbours_of_the_control_characters_pass():
    for value in (" ", "~", "\u00a0", "¡", "ÿ"):
        vr.check_lo(f"A{value}B")
        vr.check_sh(f"A{value}B")
        vr.check_pn_component(f"A{value}B")
    vr.check_ae("A ~B")


@pytest.mark.parametrize("name", TEXT_CHECKS)
def test_a_backslash_would_split_the_value_in_two_and_is_refused(name):
    # An accession A\B would be two values, matched by queries for A and for B.
    assert refusal(TEXT_CHECKS[name], "A\\B") == (
        f"A backslash (\\) separates DICOM values and cannot be inside a {name}.",
        "backslash",
    )


def test_the_person_name_separators_are_refused_inside_a_part_and_named():
    for separator in "^=\\":
        assert refusal(vr.check_pn_component, f"Doe{separator}X") == (
            f"{separator} cannot be inside a name part: DICOM PN uses ^ = \\ as separators.",
            "pn_separator",
        )
    assert refusal(vr.check_pn_component, "a=b^c\\d=e")[0].startswith("= \\ ^ cannot be inside")
    for separator in "=\\":
        assert refusal(vr.check_pn, f"Doe{separator}Jane") == (
            "= and \\ are not allowed in a person name (DICOM PN); separate parts with ^.",
            "pn_separator",
        )


def test_a_code_string_takes_capitals_digits_space_and_underscore_only():
    vr.check_cs("AZ09 _")
    vr.check_cs("")
    for bad in ("a", "z", "-", "@", "[", "`", "Ä", ".", "A\\B", "A\tB"):
        assert refusal(vr.check_cs, f"US{bad}") == (
            "Only capital letters A–Z, digits, space and underscore (DICOM CS, at most 16).",
            "cs",
        )


def test_an_ae_title_is_printable_ascii_and_not_only_spaces():
    vr.check_ae("")
    vr.check_ae(" US1 ")
    for bad in ("ÜS1", "US\u00a01", "US€"):
        assert refusal(vr.check_ae, bad) == (
            "An AE title is plain ASCII: letters A–Z, digits, spaces, signs (DICOM AE).",
            "ae",
        )
    for spaces in (" ", " " * 16):
        assert refusal(vr.check_ae, spaces) == ("An AE title cannot be only spaces (DICOM AE, at most 16).", "ae")


@pytest.mark.parametrize(
    "value", ["0", "1.2.840.10008.5.1.4.31", "2.25.0", "1.0.2", "1." + "2" * 62, "2.25." + "9" * 39, ""]
)
def test_valid_uids_pass(value):
    vr.check_ui(value)


@pytest.mark.parametrize("value", ["01", "1.02", "1..2", ".1", "1.", "1.a", "1,2", " 1.2", "1.2 ", "-1", "1.2\x00"])
def test_a_uid_is_dot_separated_numbers_without_leading_zeros(value):
    assert refusal(vr.check_ui, value) == (
        "A DICOM UID (UI) is digits separated by dots, no leading zero in a part, at most 64 characters.",
        "ui",
    )


@pytest.mark.parametrize("value", ["20261122", "00010101", "99991231", "20240229", "20260131", "20261231"])
def test_valid_dates_pass(value):
    vr.check_da(value)


@pytest.mark.parametrize("value", ["2026112", "202611220", "2026-11-22", "2026112a", " 20261122", "", None])
def test_a_date_is_exactly_eight_digits(value):
    assert refusal(vr.check_da, value) == ("A DICOM date (DA) is 8 digits, YYYYMMDD.", "da")


@pytest.mark.parametrize("value", ["20260229", "20261131", "20261300", "20260001", "20261100", "20260132", "00000101"])
def test_a_date_is_a_day_of_the_calendar(value):
    assert refusal(vr.check_da, value) == (f"{value} is not a calendar date (DICOM DA, YYYYMMDD).", "da")


@pytest.mark.parametrize(
    "value", ["00", "23", "0000", "2359", "000000", "235959", "235959.9", "235959.999999", "120000.000000"]
)
def test_valid_times_pass(value):
    vr.check_tm(value)


@pytest.mark.parametrize(
    "value",
    [
        "24",
        "2400",
        "2360",
        "235960",
        "1",
        "123",
        "12345",
        "1234567",
        "235959.",
        "235959.1234567",
        "2359.5",
        "12:30",
        "",
    ],
)
def test_a_time_is_hh_hhmm_or_hhmmss_with_at_most_six_decimals(value):
    assert refusal(vr.check_tm, value) == ("A DICOM time (TM) is HHMMSS, optionally .FFFFFF (24-hour clock).", "tm")
    assert refusal(vr.check_tm, None)[1] == "tm"


def test_dates_and_times_are_written_in_the_dicom_form():
    assert vr.da(datetime.date(2026, 1, 2)) == "20260102"
    assert vr.da(None) == ""
    assert vr.tm(datetime.time(9, 5, 7, 123456)) == "090507"
    assert vr.tm(None) == ""


def test_the_letters_a_station_cannot_show_are_named_once_each_in_order():
    assert vr.unshowable("Łukasz Łódź", "ISO_IR 100") == ["Ł", "ź"]
    assert vr.unshowable("Müller", "ISO_IR 100") == []
    assert vr.unshowable("Müller", "ISO_IR 6") == ["ü"]
    assert vr.unshowable("Łukasz 漢字", "ISO_IR 192") == []
    # A character set the portal does not know is taken as UTF-8 (it can show everything).
    assert vr.unshowable("Łukasz", "ISO 2022 IR 87") == []


def test_the_station_refusal_names_the_station_its_letters_and_what_it_cannot_show():
    assert refusal(lambda v: vr.check_charset(v, "ISO_IR 100", "US2"), "Łukasiewicz Śmiały") == (
        "The station US2 shows only Latin-1 letters and cannot show: Ł, Ś, ł. Type the name as the patient's "
        "documents spell it in those letters, or choose a station that supports UTF-8.",
        "charset",
    )
    assert refusal(lambda v: vr.check_charset(v, "ISO_IR 6", "US3"), "Zoë")[0].startswith(
        "The station US3 shows only ASCII letters and cannot show: ë."
    )
    vr.check_charset("Zoë", "ISO_IR 100", "US2")


def test_a_patient_whose_whole_name_passes_64_characters_is_refused_on_the_family_name(wl_deployment):
    from worklists.models import Patient

    fits = Patient(deployment=wl_deployment, patient_id="P-64", family_name="A" * 40, given_name="B" * 23)
    fits.full_clean()  # 40 + ^ + 23 = 64
    long = Patient(deployment=wl_deployment, patient_id="P-65", family_name="A" * 40, given_name="B" * 24)
    with pytest.raises(ValidationError) as error:
        long.full_clean()
    assert error.value.message_dict == {
        "family_name": ["At most 64 characters (DICOM PN, the whole name with its ^); this has 65."]
    }
