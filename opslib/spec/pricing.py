"""What keeping Cloud Run instances warm costs: the one place opslib writes down Google's prices.

Min instances trade money for cold starts, so the doctor states the monthly price of the fix it
suggests, with the unit prices, where they come from and when they were read. Prices change:
update PRICES and READ_ON together, from the source below.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

SOURCE = (
    "https://cloud.google.com/run/pricing (request-based billing, idle min instances), as "
    "transcribed in firebase-tools src/deploy/functions/pricing.ts @22a3f1e"
)
READ_ON = "2026-11-29"
SECONDS_PER_MONTH = 30 * 24 * 3600  # 30 days, as firebase-tools assumes
# USD per second of an idle min instance (request-based billing): (per vCPU, per GiB of memory).
PRICES = {
    1: (Decimal("0.0000025"), Decimal("0.0000025")),
    2: (Decimal("0.0000035"), Decimal("0.0000035")),
}
# Cloud Run's price tiers by region, from the same source; other regions are priced at Tier 1.
TIER_2 = frozenset(
    """
    asia-east2 asia-northeast3 asia-southeast1 asia-southeast2 asia-south1 australia-southeast1
    europe-central2 europe-west2 europe-west3 europe-west6 northamerica-northeast1
    southamerica-east1 us-west2 us-west3 us-west4
    """.split()
)
TIER_1 = frozenset(
    """
    asia-east1 asia-northeast1 asia-northeast2 europe-north1 europe-west1 europe-west4
    us-central1 us-east1 us-east4 us-west1
    """.split()
)


@dataclass(frozen=True)
class MinInstanceCost:
    """The monthly price of `count` idle instances of one size in one region, and its sums."""

    count: int
    cpu: Decimal
    memory_gib: Decimal
    region: str
    tier: int
    known_region: bool

    @property
    def per_second(self) -> Decimal:
        cpu_price, memory_price = PRICES[self.tier]
        return self.count * (self.cpu * cpu_price + self.memory_gib * memory_price)

    @property
    def monthly(self) -> Decimal:
        return self.per_second * SECONDS_PER_MONTH

    def explain(self) -> str:
        """The computation as a person checks it, with the prices' source and date."""
        cpu_price, memory_price = PRICES[self.tier]
        tier = f"Tier {self.tier}" if self.known_region else "Tier 1 assumed (region not in table)"
        return (
            f"{self.count} x ({_num(self.cpu)} vCPU x ${cpu_price} + {_num(self.memory_gib)} GiB "
            f"x ${memory_price}) per second x {SECONDS_PER_MONTH:,} s (30 days) = "
            f"${self.monthly:,.2f}/month; idle min-instance list prices for {self.region} "
            f"({tier}), before free tier and discounts; source {SOURCE}, read {READ_ON}"
        )


def min_instance_cost(
    cpu: Decimal, memory_bytes: int, region: str, count: int = 1
) -> MinInstanceCost:
    """What `count` min instances of this size cost a month while idle (request-based billing)."""
    known = region in TIER_1 or region in TIER_2
    gib = Decimal(memory_bytes) / Decimal(1024**3)
    return MinInstanceCost(count, Decimal(cpu), gib, region, 2 if region in TIER_2 else 1, known)


def _num(value: Decimal) -> str:
    """2 rather than 2.000000, 0.5 rather than 0.50."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
