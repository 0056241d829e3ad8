"""Built-in detectors for structured personal data: regexes find candidates, checksums and
range rules keep only the plausible ones.

Kinds (the name is also the placeholder stem, upper-cased: ``<EMAIL_1>``, ``<CREDIT_CARD_2>``):

============  =================================================================================
email         ``local@domain.tld`` (ASCII; the TLD is 2-24 letters)
phone         ``+``/``00`` international numbers (8-15 digits, E.164); North American
              ``(212) 555-0187`` / ``212-555-0187`` (the area code starts with 2-9 and is no N11
              service code); national numbers with a trunk ``0`` and separators (``020 7946 0958``,
              ``0151 23456789``, ``01 23 45 67 89``, 9-12 digits). Other digit groups count only
              after a word such as *phone*, *tel*, *call*, *mobile*. Dates, prices (a currency
              next to the number), counts with thousands separators (``12 345 678``), IP
              addresses and numbers after *order*, *invoice*, *ref*, *tracking*, *account*...
              are not phones.
credit_card   13-19 digits, spaces or dashes between groups, Luhn checksum, and a length that
              fits the issuer's IIN range (Visa, Mastercard incl. 2-series, Amex, Discover, JCB,
              Diners, UnionPay, Mir, Maestro).
iban          country code + 2 check digits + BBAN, spaced or not: the country's length from
              the IBAN registry and the ISO 7064 mod-97 checksum must both hold.
us_ssn        ``AAA-GG-SSSS`` (dashes or spaces); nine bare digits only right after *SSN* or
              *social security*. Area 000, 666 and 900-999, group 00 and serial 0000 are never
              issued, nor are the advertising numbers 078-05-1120, 219-09-9999, 123-45-6789
              and nine equal digits.
uk_nino       UK National Insurance number ``AB 12 34 56 C``: HMRC's prefix letter rules (no D,
              F, I, Q, U, V first; no D, F, I, O, Q, U, V second; not BG, GB, KN, NK, NT, TN,
              ZZ), suffix A-D. Upper case only.
es_dni        Spanish DNI (8 digits + letter) and NIE (X/Y/Z + 7 digits + letter): the letter
              is the mod-23 check character.
ca_sin        Canadian Social Insurance Number, 9 digits (``171 177 777``), Luhn-checked, first
              digit not 0 or 8, and only after *SIN* / *social insurance* / *NAS* (nine digits
              pass Luhn one time in ten, so the context word is required).
in_aadhaar    Indian Aadhaar number, 12 digits starting 2-9, Verhoeff checksum; written
              ``2345 6789 0124`` on its own, bare 12 digits only after *Aadhaar* / *UID*.
ip_address    IPv4 dotted quads with octets 0-255 (no leading zeros; not after *version*,
              *release*, *build*, *section*) and IPv6 addresses (validated by
              :mod:`ipaddress`; ``::1``-like short forms with fewer than five hex digits and two
              groups are skipped, as are ``a[1::2]`` slices).
============  =================================================================================

Speed: every built-in kind holds an ``@`` or at least three digits close together, so
:func:`windows` first finds those with ``str.count``/``str.find`` (C loops, much faster than
any regex scan) and the detectors run only on the regions found, each detector only where
there are enough digits for its kind. Prose without digits or ``@`` costs a dozen ``count``
calls; a long text with a few numbers costs a few short scans; number-dense text (tables,
logs) is scanned whole. Where it helps, a regex begins with the character it needs and puts its
look-behind after that, which lets the regex engine skip ahead quickly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

# --- the finding and the detector interface --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of personal data in a text: its kind and where it is. ``value`` is left out of
    ``repr`` so a finding that reaches a log line shows no personal data."""

    kind: str
    start: int
    end: int
    value: str = field(repr=False)


class Detector(Protocol):
    """Anything that finds personal data in a text (the built-in regexes, Presidio, both)."""

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds this detector can report."""
        ...

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings in ``text``, ordered by position."""
        ...


# --- checksums --------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment cards and Canadian SINs."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def verhoeff_ok(digits: str) -> bool:
    """The Verhoeff check (Aadhaar): catches every single-digit error and adjacent swap."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return c == 0


#: IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_ok(iban: str) -> bool:
    """Registry length and the mod-97 checksum of a compact, upper-case IBAN."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _iin_ok(d: str) -> bool:
    """Whether a card number's length fits the issuer its leading digits (IIN) name."""
    n = len(d)
    p2, p3, p4, p6 = int(d[:2]), int(d[:3]), int(d[:4]), int(d[:6])
    if d[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925:  # Discover
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:  # JCB
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39):  # Diners Club
        return 14 <= n <= 19
    if 2200 <= p4 <= 2204 or p2 in (62, 81):  # Mir, UnionPay
        return 16 <= n <= 19
    if p2 == 50 or 56 <= p2 <= 69:  # Maestro
        return 13 <= n <= 19
    return False


# --- context words ----------------------------------------------------------------------------

_CUES = re.compile(
    r"\b(?:(?P<phone>phone|tel|telephone|mobile|cell|cellphone|fax|call|ring|whatsapp|sms"
    r"|text me|reach me|contact|hotline|landline|handy|telefon|téléphone|portable|móvil"
    r"|telefono)|(?P<id>order|invoice|inv|ref|reference|tracking|track|account|acct|customer"
    r"|sku|po|ticket|case|serial|part|item|booking|confirmation|transaction|id|no|nr|isbn"
    r"|batch|lot|policy|claim|shipment|parcel|iban|card|ssn|sin|nino))\b"
)
_CURRENCY = re.compile(r"(?i)(?:[$€£¥₹]|\b(?:usd|eur|gbp|chf|jpy|inr|dollars?|euros?)\b)")
_DATE = re.compile(r"\b(?:\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-](?:\d{4}|\d{2}))\b")
_THOUSANDS = re.compile(r"^\d{1,3}(?:([ .])\d{3})(?:\1\d{3})*$")
_IP_LIKE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_VERSION_WORDS = re.compile(
    r"(?i)\b(?:version|ver|release|build|firmware|section|chapter|rule|step|clause)\b\W*$"
)
_SSN_WORDS = re.compile(r"(?i)\b(?:ssn|social security(?: number| no)?)\b")
_SIN_WORDS = re.compile(r"\bSIN\b|\bNAS\b|(?i:social insurance|assurance sociale)")
_AADHAAR_WORDS = re.compile(r"(?i)\b(?:aadhaa?r|uidai|uid)\b")


def _cue(before: str) -> str | None:
    """The kind of the last cue word in ``before``: ``"phone"``, ``"id"`` or None."""
    last: re.Match[str] | None = None
    for m in _CUES.finditer(before.lower()):
        last = m
    return last.lastgroup if last is not None else None


def _context(text: str, start: int, pattern: re.Pattern[str], width: int = 40) -> bool:
    return pattern.search(text, max(0, start - width), start) is not None


# --- one function per kind: text → spans -----------------------------------------------------

Spans = Iterator[tuple[int, int]]  # (start, end) in the whole text

_EMAIL = re.compile(
    r"(?<![\w.%+'-])[A-Za-z0-9][A-Za-z0-9._%+'-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![\w-]|\.[A-Za-z0-9])"
)


def _emails(text: str, pos: int, endpos: int) -> Spans:
    for m in _EMAIL.finditer(text, pos, endpos):
        yield m.span()


_PHONE = re.compile(
    r"(?=[+(\d])(?<![\w@#$€£¥%/.,+\-])(?:"
    r"(?P<intl>(?:\+|00)[1-9]\d{0,3}(?:[ .\-]?\(0\))?(?:[ .\-]?(?:\(\d{1,6}\)|\d{1,6})){1,6})"
    r"|(?P<nanp>(?:1[ .\-]?)?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .\-])\d{3}[ .\-]\d{4})"
    r"|(?P<trunk>(?:\(0\d{1,4}\) ?|0\d{1,4}[ .\-/])\d{2,8}(?:[ .\-]\d{2,8}){0,3})"
    r"|(?P<other>\d{2,5}(?:[ .\-]\d{2,5}){1,4}|\d{7,15})"
    r")(?![\w@%€$£¥]|[.,:/\-]\d)"
)


def _phones(text: str, pos: int, endpos: int) -> Spans:
    for m in _PHONE.finditer(text, pos, endpos):
        if _phone_shape_ok(m) and _phone_context_ok(text, m):
            yield m.span()


def _phone_shape_ok(m: re.Match[str]) -> bool:
    """Digit counts and numbering rules per shape (cheap: checked before any context)."""
    shape, s = m.lastgroup, m.group()
    if _IP_LIKE.match(s) or (shape != "intl" and _DATE.search(s)):
        return False
    digits = sum(ch.isdigit() for ch in s)
    if shape == "intl":
        return 8 <= digits - s.count("(0)") <= 15
    if shape == "nanp":
        return re.sub(r"\D", "", s)[-9:-7] != "11"  # N11 codes (411, 911) are services
    if shape == "trunk":
        return 9 <= digits <= 12
    # "other": "12 345 678" is a count written with thousands separators
    return 7 <= digits <= 15 and not _THOUSANDS.match(s)


def _phone_context_ok(text: str, m: re.Match[str]) -> bool:
    """No currency next to it; no id word ("order", "invoice"...) closer before it than a
    phone word; and for shapes of no particular numbering plan, a phone word is required."""
    start, end = m.span()
    if _CURRENCY.search(text, max(0, start - 5), start) or _CURRENCY.match(
        text[end : end + 8].lstrip()
    ):
        return False
    cue = _cue(text[max(0, start - 40) : start])
    return cue == "phone" or (cue is None and m.lastgroup != "other")


_CARD = re.compile(r"\d(?<![\w.,/$€£¥#\-]\d)(?:[ \-]?\d){11,18}(?![\w]|[.,/\-]\d)")
_SPLIT = re.compile(r"[ \-]")


def _cards(text: str, pos: int, endpos: int) -> Spans:
    for m in _CARD.finditer(text, pos, endpos):
        s = m.group()
        seps = set(_SPLIT.findall(s))
        if len(seps) > 1:
            continue
        groups = _SPLIT.split(s) if seps else [s]
        span = _card_in_groups(groups)
        if span is None:
            continue
        i, j = span  # groups[i:j] form the card; map back to character offsets
        offset = sum(len(g) + 1 for g in groups[:i])
        length = sum(len(g) for g in groups[i:j]) + (j - i - 1)
        yield m.start() + offset, m.start() + offset + length


def _card_in_groups(groups: list[str]) -> tuple[int, int] | None:
    """The longest run of whole groups (earliest first) that is a valid card number: a number
    followed by an expiry or a CVV is still found."""
    n = len(groups)
    for size in range(n, 0, -1):
        for i in range(0, n - size + 1):
            digits = "".join(groups[i : i + size])
            if 13 <= len(digits) <= 19 and luhn_ok(digits) and _iin_ok(digits):
                return i, i + size
    return None


_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?:[ \-]?[A-Z0-9]){10,34}")


def _ibans(text: str, pos: int, endpos: int) -> Spans:
    for m in _IBAN.finditer(text, pos, endpos):
        s = m.group()
        want = IBAN_LENGTHS.get(s[:2])
        if want is None:
            continue
        end = _end_of_nth_alnum(s, want)
        if end is None:
            continue
        stop = m.start() + end
        if stop < len(text) and text[stop].isalnum():  # part of a longer token
            continue
        compact = re.sub(r"[ \-]", "", s[:end])
        if iban_ok(compact):
            yield m.start(), stop


def _end_of_nth_alnum(s: str, n: int) -> int | None:
    """The offset just past the ``n``-th letter or digit of ``s`` (separators skipped)."""
    count = 0
    for i, ch in enumerate(s):
        if ch.isalnum():
            count += 1
            if count == n:
                return i + 1
    return None


_SSN = re.compile(r"\d(?<![\w\-]\d)(?:\d{2}([\- ])\d{2}\1\d{4}|\d{8})(?![\w]|[\-.,]\d)")
_SSN_NEVER = frozenset({"078051120", "219099999", "123456789"})


def _ssns(text: str, pos: int, endpos: int) -> Spans:
    for m in _SSN.finditer(text, pos, endpos):
        digits = re.sub(r"\D", "", m.group())
        if m.group(1) is None and not _context(text, m.start(), _SSN_WORDS, 30):
            continue
        area, group, serial = digits[:3], digits[3:5], digits[5:]
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        if digits in _SSN_NEVER or len(set(digits)) == 1:
            continue
        yield m.span()


_NINO = re.compile(
    r"(?=[A-Z])(?<![A-Za-z0-9])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?\d{2} ?\d{2} ?\d{2} ?[A-D]"
    r"(?![A-Za-z0-9])"
)
_NINO_NEVER = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def _ninos(text: str, pos: int, endpos: int) -> Spans:
    for m in _NINO.finditer(text, pos, endpos):
        if m.group(1) not in _NINO_NEVER:
            yield m.span()


_DNI = re.compile(r"(?=[XYZ\d])(?<![\w\-])(?:([XYZ])[\- ]?(\d{7})|(\d{8}))[\- ]?([A-Z])(?![\w])")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _dnis(text: str, pos: int, endpos: int) -> Spans:
    for m in _DNI.finditer(text, pos, endpos):
        prefix, nie_digits, dni_digits, letter = m.groups()
        number = int(str("XYZ".index(prefix)) + nie_digits) if prefix else int(dni_digits)
        if _DNI_LETTERS[number % 23] == letter:
            yield m.span()


_SIN = re.compile(r"\d(?<![\w\-]\d)\d{2}([\- ]?)\d{3}\1\d{3}(?![\w]|[\-.,]\d)")


def _sins(text: str, pos: int, endpos: int) -> Spans:
    for m in _SIN.finditer(text, pos, endpos):
        digits = re.sub(r"\D", "", m.group())
        if digits[0] in "08" or not luhn_ok(digits):
            continue
        if _context(text, m.start(), _SIN_WORDS):
            yield m.span()


_AADHAAR = re.compile(r"[2-9](?<![\w\-][2-9])\d{3}([\- ]?)\d{4}\1\d{4}(?![\w]|[\-.,]\d)")


def _aadhaars(text: str, pos: int, endpos: int) -> Spans:
    for m in _AADHAAR.finditer(text, pos, endpos):
        digits = re.sub(r"\D", "", m.group())
        if not verhoeff_ok(digits):
            continue
        if m.group(1) or _context(text, m.start(), _AADHAAR_WORDS):
            yield m.span()


_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
    r"(?![\w:]|\.\d)"
)


def _ips(text: str, pos: int, endpos: int) -> Spans:
    if text.find(".", pos, endpos) != -1:
        for m in _IPV4.finditer(text, pos, endpos):
            octets = m.group().split(".")
            if any((len(o) > 1 and o[0] == "0") or int(o) > 255 for o in octets):
                continue  # "1.2.3.400", "01.02.03.04": not an address as written
            if not _VERSION_WORDS.search(text, max(0, m.start() - 20), m.start()):
                yield m.span()
    i = text.find(":", pos, endpos)
    while i != -1:  # IPv6: only around colons (a regex scan of prose would cost more)
        a, b = i, i
        while a > pos and text[a - 1] in _V6_CHARS:
            a -= 1
        while b < endpos and text[b] in _V6_CHARS:
            b += 1
        v6 = _IPV6.search(text, a, b)
        if v6 is not None and _ipv6_ok(v6.group()):
            yield v6.span()
        i = text.find(":", b, endpos)


_V6_CHARS = frozenset("0123456789abcdefABCDEF:.")


def _ipv6_ok(s: str) -> bool:
    groups = [g for g in s.split(":") if g]
    if len(groups) < 3 and sum(len(g) for g in groups) < 5:
        return False  # "::1", "a[1::2]": too short to tell from code
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


#: Built-in kinds in priority order: where two findings overlap, the earlier kind wins (an
#: email holding digits is an email; a valid card is not also a phone).
BUILTIN: dict[str, Callable[[str, int, int], Spans]] = {
    "email": _emails,
    "iban": _ibans,
    "credit_card": _cards,
    "us_ssn": _ssns,
    "uk_nino": _ninos,
    "es_dni": _dnis,
    "ca_sin": _sins,
    "in_aadhaar": _aadhaars,
    "ip_address": _ips,
    "phone": _phones,
}
NATIONAL_IDS = ("us_ssn", "uk_nino", "es_dni", "ca_sin", "in_aadhaar")
#: Names that stand for several kinds in a policy's ``kinds`` list.
GROUPS: dict[str, tuple[str, ...]] = {"national_id": NATIONAL_IDS}

#: The fewest digits each kind has (a scan region with fewer skips that detector).
MIN_DIGITS = {
    "email": 0, "iban": 8, "credit_card": 13, "us_ssn": 9, "uk_nino": 6, "es_dni": 7,
    "ca_sin": 9, "in_aadhaar": 12, "ip_address": 3, "phone": 7,
}  # fmt: skip

_GAP = 10  # digits this close belong to one cluster (IBAN letter groups are 4 wide)
_MARGIN = 16  # a region reaches this far past its cluster, then to the end of the token


@dataclass(frozen=True, slots=True)
class Region:
    """A stretch of text worth scanning: ``digits`` and ``emails`` ('@' count) decide which
    detectors run on it."""

    start: int
    end: int
    digits: int
    emails: int


def _cut_before(text: str, i: int) -> int:
    """Where the whitespace-delimited token holding position ``i`` starts."""
    if i <= 0:
        return 0
    return max(text.rfind(" ", 0, i), text.rfind("\n", 0, i), text.rfind("\t", 0, i)) + 1


def _cut_after(text: str, i: int) -> int:
    """Where the token holding position ``i`` ends (the whitespace after it)."""
    if i >= len(text):
        return len(text)
    ends = [j for j in (text.find(" ", i), text.find("\n", i), text.find("\t", i)) if j != -1]
    return min(ends) if ends else len(text)


def _anchors(text: str, chars: str) -> list[int]:
    found: list[int] = []
    for ch in chars:
        i = text.find(ch)
        while i != -1:
            found.append(i)
            i = text.find(ch, i + 1)
    return found


def windows(text: str) -> list[Region]:
    """The regions of ``text`` that could hold a built-in kind.

    Every kind but email has at least three digits close together and every email an ``@``,
    so digits are gathered into clusters (``str.find``: C loops, far faster than a regex
    scan) and only clusters with enough digits, or an ``@``, are scanned, each from the start
    of the token a little before it to the end of the token a little after it. Detectors scan
    the whole text's regions with ``pos``/``endpos``, so their look-behinds and context words
    see the real text around a region. Prose without digits or ``@`` costs a dozen
    ``str.count`` calls.
    """
    n = len(text)
    digit_count = sum(text.count(ch) for ch in "0123456789")
    if digit_count < 3 and "@" not in text:
        return []
    if digit_count > n // 20:  # number-dense text (tables, logs): clustering would cost more
        return [Region(0, n, digit_count, text.count("@"))]
    clusters: list[list[int]] = []  # [first, last, digits]
    for i in sorted(_anchors(text, "0123456789")):
        if clusters and i - clusters[-1][1] <= _GAP:
            clusters[-1][1] = i
            clusters[-1][2] += 1
        else:
            clusters.append([i, i, 1])
    spans = [(a, b + 1, d, 0) for a, b, d in clusters if d >= 3]
    spans += [(i, i + 1, 0, 1) for i in _anchors(text, "@")]
    spans.sort()
    regions: list[Region] = []
    for a, b, digits, emails in spans:
        start = _cut_before(text, max(0, a - _MARGIN if digits else a))
        end = _cut_after(text, min(n, b + _MARGIN if digits else b))
        if regions and start <= regions[-1].end:
            last = regions[-1]
            end = max(end, last.end)
            regions[-1] = Region(last.start, end, last.digits + digits, last.emails + emails)
        else:
            regions.append(Region(start, end, digits, emails))
    if sum(r.end - r.start for r in regions) > n // 2:  # number-dense text: scan it once
        return [Region(0, n, digit_count, text.count("@"))]
    return regions


def resolve_overlaps(findings: Iterable[Finding], priority: dict[str, int]) -> list[Finding]:
    """Keep findings that do not overlap a higher-priority (then earlier, then longer) one."""
    ranked = sorted(
        findings, key=lambda f: (priority.get(f.kind, len(priority)), f.start, f.start - f.end)
    )
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    kept.sort(key=lambda f: f.start)
    return kept


class RegexDetector:
    """The built-in detectors for the kinds asked for, plus named custom regexes (which run on
    every text and win over built-in kinds where they overlap)."""

    def __init__(
        self,
        kinds: Iterable[str] = tuple(BUILTIN),
        custom: Iterable[tuple[str, re.Pattern[str]]] = (),
    ) -> None:
        wanted = set(kinds)
        self._builtin = [(k, f) for k, f in BUILTIN.items() if k in wanted]
        self._custom = list(custom)
        names = [name for name, _ in self._custom] + [k for k, _ in self._builtin]
        self._priority = {name: i for i, name in enumerate(names)}
        self._kinds = frozenset(names)

    @property
    def kinds(self) -> frozenset[str]:
        return self._kinds

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for name, pattern in self._custom:
            for m in pattern.finditer(text):
                if m.end() > m.start():
                    found.append(Finding(name, m.start(), m.end(), m.group()))
        if self._builtin:
            for r in windows(text):
                for kind, spans in self._builtin:
                    if r.digits < MIN_DIGITS[kind] or (kind == "email" and not r.emails):
                        continue
                    for start, end in spans(text, r.start, r.end):
                        found.append(Finding(kind, start, end, text[start:end]))
        if len(found) < 2:
            return found
        return resolve_overlaps(found, self._priority)


__all__ = [
    "BUILTIN",
    "GROUPS",
    "IBAN_LENGTHS",
    "MIN_DIGITS",
    "NATIONAL_IDS",
    "Detector",
    "Finding",
    "RegexDetector",
    "Region",
    "iban_ok",
    "luhn_ok",
    "resolve_overlaps",
    "verhoeff_ok",
    "windows",
]
