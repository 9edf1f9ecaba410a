"""Personal data and the field rules that keep it clean.

Every rule raises a :class:`PydanticCustomError` whose message names what is wrong and
never repeats the value, so a validation error can be sent back to a police system or
written to a log without leaking the person's data.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from henvis.schemas.municipalities import DANISH_MUNICIPALITIES

# ---------------------------------------------------------------- phone numbers

_PHONE_SEPARATORS = re.compile(r"[\s().-]")


def normalise_phone(value: object) -> str:
    """Accept the usual ways Danes write a number and return ``+45XXXXXXXX``.

    ``12345678``, ``12 34 56 78``, ``+45 12 34 56 78``, ``0045 1234 5678``, ``(+45) 12-34-56-78``
    are all the same number.  Danish subscriber numbers have eight digits and do not start
    with 0 or 1; foreign numbers are refused because the centres call Danish numbers.
    """
    if not isinstance(value, str):
        raise PydanticCustomError("phone_type", "must be a phone number written as a string")
    digits = _PHONE_SEPARATORS.sub("", value)
    if digits.startswith("+45"):
        digits = digits[3:]
    elif digits.startswith("0045"):
        digits = digits[4:]
    elif digits.startswith("+") or digits.startswith("00"):
        raise PydanticCustomError("phone_country", "must be a Danish phone number (+45)")
    if not re.fullmatch(r"[2-9]\d{7}", digits):
        raise PydanticCustomError("phone_invalid", "must be a Danish phone number of 8 digits, optionally with +45")
    return "+45" + digits


Phone = Annotated[str, BeforeValidator(normalise_phone), Field(json_schema_extra={"pattern": r"^\+45[2-9]\d{7}$"})]

# ---------------------------------------------------------------- CPR numbers


def _cpr_century(year2: int, seventh_digit: int) -> int:
    """The century rule of the CPR register (CPR-kontoret): digit 7 and the year decide it."""
    if seventh_digit <= 3:
        return 1900
    if seventh_digit in (4, 9):
        return 2000 if year2 <= 36 else 1900
    return 2000 if year2 <= 57 else 1800


def normalise_cpr(value: object) -> str:
    """Accept ``DDMMYY-SSSS`` or ten digits whose first six are a real birth date."""
    if not isinstance(value, str):
        raise PydanticCustomError("cpr_type", "must be a CPR number written as a string")
    compact = value.strip()
    if re.fullmatch(r"\d{6}-\d{4}", compact):
        compact = compact.replace("-", "")
    if not re.fullmatch(r"\d{10}", compact):
        raise PydanticCustomError("cpr_format", "must be 10 digits (DDMMYY-SSSS)")
    day, month, year2, seventh = int(compact[0:2]), int(compact[2:4]), int(compact[4:6]), int(compact[6])
    try:
        date(_cpr_century(year2, seventh) + year2, month, day)
    except ValueError:
        raise PydanticCustomError("cpr_date", "must start with a real date of birth (DDMMYY)") from None
    return compact


Cpr = Annotated[str, BeforeValidator(normalise_cpr), Field(json_schema_extra={"pattern": r"^\d{10}$"})]

# ---------------------------------------------------------------- names and free text


def _refuse_control_characters(value: str) -> None:
    """Line breaks, NUL, bidi overrides and the like have no place in contact details: they
    are how log injection and spoofed display text start."""
    if any(unicodedata.category(char)[0] == "C" for char in value):
        raise PydanticCustomError("text_control_characters", "must not contain control or formatting characters")


# A name in Latin-1 letters with single spaces between its parts is already clean and NFC: the
# common case, checked by one regex instead of a Unicode lookup per character (every consent
# is validated again by the router, so this is on its hot path).
_PLAIN_NAME = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ][A-Za-zÀ-ÖØ-öø-ÿ'’.-]*(?: [A-Za-zÀ-ÖØ-öø-ÿ'’.-]+)*")


def _check_name(value: str) -> str:
    """A person's name: letters of any script, spaces, hyphens, apostrophes and periods."""
    return value if _PLAIN_NAME.fullmatch(value) else check_name_thoroughly(value)


def check_name_thoroughly(value: str) -> str:
    """:func:`_check_name` for any text: one Unicode category lookup per character."""
    _refuse_control_characters(value)
    collapsed = " ".join(part for part in value.split(" ") if part)
    if not collapsed:
        raise PydanticCustomError("name_empty", "must not be empty")
    for char in collapsed:
        category = unicodedata.category(char)
        if category[0] in ("L", "M") or char in " -'’.":
            continue
        raise PydanticCustomError("name_characters", "may hold only letters, spaces, hyphens, apostrophes and periods")
    if not any(unicodedata.category(char)[0] == "L" for char in collapsed):
        raise PydanticCustomError("name_letters", "must contain letters")
    return unicodedata.normalize("NFC", collapsed)


FullName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_check_name)]


def _check_printable(value: str) -> str:
    """Free text (street, city): no control, format (e.g. RTL override) or markup characters."""
    _refuse_control_characters(value)
    collapsed = " ".join(part for part in value.split(" ") if part)
    if not collapsed:
        raise PydanticCustomError("text_empty", "must not be empty")
    for char in collapsed:
        if unicodedata.category(char)[0] == "C" or char in "<>{}\\":
            raise PydanticCustomError("text_characters", "contains characters that are not allowed")
    return unicodedata.normalize("NFC", collapsed)


PrintableText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_check_printable)]


def _check_email(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        raise PydanticCustomError("email_invalid", "must be a valid e-mail address") from None


Email = Annotated[str, Field(max_length=254), AfterValidator(_check_email)]

# ---------------------------------------------------------------- municipality codes


def _check_municipality(value: str) -> str:
    if value not in DANISH_MUNICIPALITIES:
        raise PydanticCustomError("municipality_unknown", "is not a Danish municipality code")
    return value


MunicipalityCode = Annotated[str, Field(pattern=r"^\d{3}$"), AfterValidator(_check_municipality)]

# ---------------------------------------------------------------- models


class PostalAddress(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    street: PrintableText
    postcode: str = Field(pattern=r"^\d{4}$")
    city: PrintableText


class Person(BaseModel):
    """Contact details of a person who said yes to being contacted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    full_name: FullName
    phone: Phone
    email: Email | None = None
    postal_address: PostalAddress | None = None
    cpr: Cpr | None = None


#: Top-level keys that mean an event carries personal data.
PERSONAL_DATA_FIELDS = frozenset({"person", "full_name", "name", "phone", "email", "postal_address", "address", "cpr"})
