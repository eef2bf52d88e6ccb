"""What extract and fanout share: the record's JSON Schema and the business checks on it.

Without a schema the booking example applies (its schema, checks and cross-field facts).
"""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from compound.service.chains.booking import (
    BOOKING_CHECKS,
    BOOKING_SCHEMA,
    booking_facts,
)
from compound.service.chains.checks import (
    Check,
    check_fields_exist,
    check_json_schema,
    evaluate,
)


class RecordSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    record_schema: Optional[dict] = Field(None, alias="schema",
                                          description="JSON Schema of one record; the booking example when absent")
    checks: Optional[list[Check]] = Field(None, max_length=50,
                                          description="business facts; the booking checks when schema is absent")

    @field_validator("record_schema")
    @classmethod
    def _schema_is_a_record(cls, value: Optional[dict]) -> Optional[dict]:
        return None if value is None else check_json_schema(value)

    def check_fields_exist(self) -> None:
        check_fields_exist(self.schema_(), self.checks_())

    def schema_(self) -> dict:
        return self.record_schema if self.record_schema is not None else BOOKING_SCHEMA

    def checks_(self) -> list[Check]:
        if self.checks is not None:
            return self.checks
        return BOOKING_CHECKS if self.record_schema is None else []

    def facts(self, record) -> list[str]:
        """Failed facts: the declared checks, plus the booking example's cross-field facts."""
        extra = booking_facts(record) if self.record_schema is None and self.checks is None else []
        return evaluate(record, self.checks_()) + extra
