"""Team quotas and fair share: the pure admission policy (no store, no clock, no threads).

    model        TeamQuota, Demand, Holding: what a team may hold, what waits, what runs
    shares       dominant resource shares (DRF) and their denominator
    usage        decayed usage per team and user (HTCondor's half-life)
    policy       admit(): which demands start now, and why the others wait
    preemption   preempt(): which borrowing attempts to stop for a lender that waited too long
    why          the reasons an attempt is pending, as one line of text each

The store keeps the ledger and the scheduler calls ``admit``; see docs/quotas.md for the model.
"""

from conveyor.quotas.model import Demand, Holding, TeamQuota
from conveyor.quotas.policy import Admission, admit
from conveyor.quotas.preemption import preempt
from conveyor.quotas.shares import denominator, dominant_share
from conveyor.quotas.usage import HALF_LIFE, Usage, decay
from conveyor.quotas.why import (
    Backoff,
    BorrowLimit,
    FairShare,
    LenderBusy,
    NoCapacity,
    NoExecutor,
    QuotaFull,
    Reason,
    RunsFull,
    Upstream,
    as_dict,
)

__all__ = [
    "HALF_LIFE",
    "Admission",
    "Backoff",
    "BorrowLimit",
    "Demand",
    "FairShare",
    "Holding",
    "LenderBusy",
    "NoCapacity",
    "NoExecutor",
    "QuotaFull",
    "Reason",
    "RunsFull",
    "TeamQuota",
    "Upstream",
    "Usage",
    "admit",
    "as_dict",
    "decay",
    "denominator",
    "dominant_share",
    "preempt",
]
