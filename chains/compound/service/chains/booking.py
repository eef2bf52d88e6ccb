"""The booking example: default schema and business checks for `extract` and `fanout`.

Same fields as the json Truss's named `booking` schema. The schema here deliberately has no
numeric bounds: those are business facts, checked in code by the chain's check step, which
asks the json node again with the failed facts when they do not hold.
"""
from __future__ import annotations

from compound.service.chains.checks import Check

BOOKING_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "name the table is booked under"},
        "party_size": {"type": "integer", "description": "number of guests"},
        "time": {"type": "string", "description": "time of the booking as the message says it"},
        "vegetarian": {"type": "integer", "description": "number of vegetarian guests"},
    },
    "required": ["name", "party_size", "time", "vegetarian"],
    "additionalProperties": False,
}

BOOKING_CHECKS = [
    Check(field="party_size", op=">", value=0, message="party_size must be a positive number of guests"),
    Check(field="party_size", op="<=", value=50, message="party_size must be at most 50"),
    Check(field="vegetarian", op=">=", value=0, message="vegetarian must not be negative"),
    Check(field="name", op="nonempty", message="name must be the name the table is booked under"),
    Check(field="time", op="regex",
          value=r"(?i)\d|noon|midnight|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve",
          message="time must be the time of day that was asked for"),
]


def booking_facts(record: dict) -> list[str]:
    """Facts across fields (arithmetic a schema cannot express)."""
    size, veg = record.get("party_size"), record.get("vegetarian")
    if isinstance(size, int) and isinstance(veg, int) and veg > size:
        return [f"vegetarian ({veg}) cannot exceed party_size ({size})"]
    return []
