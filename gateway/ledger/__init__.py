"""Proof of service: the collection ledger (was each scheduled bin lifted, not put out, missed?), the answers
it gives a citizen's missed-collection report, and the statistics built on it.

`book.py` is pure: the stops on a schedule and the fold of truck readings into facts per stop and day, the
same whether the readings come as they are committed (`live.py`, under the sweep lease) or all at once from
history (a rebuild). Facts merge by "earliest wins", so reading a row twice changes nothing.
"""
