"""What the command knows of cards and records."""

from __future__ import annotations

__all__ = ["DOCUMENTED_TYPES"]


# The card types the API documents (API notes, "type" values).
DOCUMENTED_TYPES = frozenset(
    {
        "9_id_card_front",
        "9_id_card_back",
        "12_id_card_front",
        "12_id_card_back",
        "chip_id_card_front",
        "chip_id_card_back",
        "chip_id_card_2024_front",
        "chip_id_card_2024_back",
        "passport",
        "driving_license",
        "vehicle_registration_front",
        "vehicle_registration_back",
    }
)
