"""The centre registry: the eleven municipalities and their centres, loaded from data.

The registry is a versioned YAML file (``henvis/data/centres.v1.yaml`` by default,
``HENVIS_REGISTRY_PATH`` to override).  Loading validates it and fails loudly: a service
must not start with a registry that could route a person to the wrong centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, model_validator

from henvis import deadlines
from henvis.schemas.events import ManualReason, RoutedBy
from henvis.schemas.municipalities import DANISH_MUNICIPALITIES
from henvis.schemas.topics import centre_topic


class RegistryError(RuntimeError):
    """The registry file is missing, unreadable or inconsistent."""


class Centre(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    municipality_code: str = Field(pattern=r"^\d{3}$")
    municipality: str = Field(min_length=1)
    slug: str = Field(pattern=r"^[a-z][a-z0-9-]{1,39}$")
    name: str = Field(min_length=1)
    topic: str | None = Field(default=None, description="Defaults to referrals.<slug>.v2")
    contact_due_working_days: int = Field(default=1, ge=0, le=30)
    treatment_due_days: int = Field(default=14, ge=1, le=90)
    mailbox: EmailStr | None = Field(
        default=None, description="The centre's shared mailbox (not a person's): the daily digest goes here."
    )
    sor_id: str | None = Field(
        default=None,
        pattern=r"^\d{6,18}$",
        description="The centre's id in Sundhedsvæsenets Organisationsregister (SOR); its FHIR endpoint answers to it.",
    )
    sor_id_placeholder: bool = Field(
        default=False, description="True while sor_id is a made-up stand-in, not the centre's real SOR id."
    )

    @model_validator(mode="after")
    def _placeholder_needs_id(self):
        if self.sor_id_placeholder and self.sor_id is None:
            raise ValueError(f"{self.slug}: sor_id_placeholder is set but there is no sor_id")
        return self

    @property
    def topic_base(self) -> str:
        return self.topic or centre_topic(self.slug)

    def contact_due_by(self, issued_at: datetime) -> date:
        return deadlines.contact_due_by(issued_at, self.contact_due_working_days)

    def treatment_due_by(self, issued_at: datetime) -> date:
        return deadlines.treatment_due_by(issued_at, self.treatment_due_days)


@dataclass(frozen=True)
class ToCentre:
    """A consent routed to a centre, and why that one."""

    centre: Centre
    routed_by: RoutedBy


@dataclass(frozen=True)
class ToManualHandling:
    """A consent no centre can take: a person routes it (reason, and a fixed explanation)."""

    reason: ManualReason
    detail: str


Route = ToCentre | ToManualHandling


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    district: str
    centres: tuple[Centre, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self):
        for centre in self.centres:
            if centre.municipality_code not in DANISH_MUNICIPALITIES:
                raise ValueError(f"{centre.municipality_code} is not a Danish municipality code")
        for attribute in ("municipality_code", "slug", "topic_base", "sor_id"):
            values = [getattr(centre, attribute) for centre in self.centres if getattr(centre, attribute) is not None]
            duplicates = sorted({value for value in values if values.count(value) > 1})
            if duplicates:
                raise ValueError(f"duplicate {attribute}: {', '.join(duplicates)}")
        return self

    @cached_property
    def _by_code(self) -> dict[str, Centre]:
        return {centre.municipality_code: centre for centre in self.centres}

    @cached_property
    def _by_slug(self) -> dict[str, Centre]:
        return {centre.slug: centre for centre in self.centres}

    def for_municipality(self, code: str) -> Centre | None:
        return self._by_code.get(code)

    def by_slug(self, slug: str) -> Centre | None:
        return self._by_slug.get(slug)

    @cached_property
    def _by_sor_id(self) -> dict[str, Centre]:
        return {centre.sor_id: centre for centre in self.centres if centre.sor_id is not None}

    def by_slug_or_sor_id(self, key: str) -> Centre | None:
        """The centre whose slug or SOR id is ``key`` (a slug never is all digits, a SOR id always is)."""
        return self._by_slug.get(key) or self._by_sor_id.get(key)

    @property
    def slugs(self) -> list[str]:
        return [centre.slug for centre in self.centres]

    def route(self, preferred_centre: str | None, municipality_code: str | None) -> Route:
        """The one routing rule (contract 3.3), shared by the router, which routes, and the
        consent service, whose key store releases a referral's data key to that centre only.

        A preferred centre wins; without one, the residence municipality's centre.  No code,
        a code outside the registry, or a preferred centre missing from it: manual handling.
        """
        if preferred_centre is not None:
            centre = self.by_slug(preferred_centre)
            if centre is None:
                return ToManualHandling(
                    ManualReason.INVALID_EVENT, "invalid fields: preferred_centre (not a centre in the registry)"
                )
            return ToCentre(centre, RoutedBy.PREFERRED_CENTRE)
        if municipality_code is None:
            return ToManualHandling(
                ManualReason.NO_MUNICIPALITY, "no municipality code: the person has no Danish address"
            )
        centre = self.for_municipality(municipality_code)
        if centre is None:
            return ToManualHandling(
                ManualReason.OUTSIDE_DISTRICT, "the person lives outside the district's municipalities"
            )
        return ToCentre(centre, RoutedBy.RESIDENCE)


def _default_text() -> str:
    return resources.files("henvis").joinpath("data/centres.v1.yaml").read_text(encoding="utf-8")


def load_registry(path: Path | str | None = None) -> Registry:
    """Load and validate the registry; ``None`` means the packaged default."""
    try:
        text = Path(path).read_text(encoding="utf-8") if path else _default_text()
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"cannot read the centre registry {path or '(packaged)'}: {exc}") from exc
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        raise RegistryError(f"the centre registry {path or '(packaged)'} is invalid:\n{exc}") from exc
