"""Monthly statistics of the referral ledger for Gugus Tugas TPPO coordination meetings: counts and durations,
never identity or case ids (``rujukan report``)."""
