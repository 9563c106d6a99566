"""The landing-zone logs as the contract defines them (CONTRACT.md section 1)."""

from __future__ import annotations

from dataclasses import dataclass

LOGS = ("transactions", "logins", "labels")

CHANNELS = ("pos", "ecom", "transfer", "atm")
LOGIN_EVENT_TYPES = (
    "login_success",
    "login_failure",
    "password_reset",
    "mfa_change",
    "profile_change",
)
# One vocabulary for the interleaved sequence: a login event keeps its type, a
# transaction becomes ``tx_<channel>``.
EVENT_KINDS = LOGIN_EVENT_TYPES + tuple(f"tx_{c}" for c in CHANNELS)

MAX_ID_LEN = 256
MAX_AMOUNT = 1e9

REASON_CODES = (
    "missing_value",
    "bad_number",
    "bad_timestamp",
    "out_of_partition",
    "negative_amount",
    "amount_out_of_range",
    "unknown_category",
    "bad_code",
    "id_too_long",
    "duplicate_event_id",
    "bad_label",
    "unknown_event_id",
)


@dataclass(frozen=True)
class LogSchema:
    """Columns of one log: required ones must exist in every file."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    id_columns: tuple[str, ...]
    time_column: str | None

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


TRANSACTIONS = LogSchema(
    name="transactions",
    required=(
        "event_id",
        "customer_id",
        "event_time",
        "amount",
        "currency",
        "merchant_id",
        "merchant_category",
        "channel",
        "country",
    ),
    optional=("card_id", "device_id", "ip_address"),
    id_columns=("event_id", "customer_id", "merchant_id", "card_id", "device_id"),
    time_column="event_time",
)

LOGINS = LogSchema(
    name="logins",
    required=("event_id", "customer_id", "event_time", "event_type"),
    optional=("device_id", "ip_address", "country", "user_agent"),
    id_columns=("event_id", "customer_id", "device_id"),
    time_column="event_time",
)

LABELS = LogSchema(
    name="labels",
    required=("event_id", "is_fraud"),
    optional=("reported_at",),
    id_columns=("event_id",),
    time_column="reported_at",
)

SCHEMAS: dict[str, LogSchema] = {s.name: s for s in (TRANSACTIONS, LOGINS, LABELS)}
