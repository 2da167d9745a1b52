"""Per-client request counts shared by processes through a real accounts database (SQLite file),
with an injected clock."""

import datetime as dt

from sqlalchemy import func, select

from chatbot.accounts import Accounts, RateCounter
from chatbot.ratelimit import RequestCounter


class Clock:
    now = dt.datetime(2026, 11, 30, 9, 0, 10)

    def __call__(self):
        return self.now


def stored(accounts: Accounts, key: str) -> int:
    with accounts.Session() as s:
        return s.scalar(select(func.coalesce(func.sum(RateCounter.count), 0)).where(RateCounter.key == key))


def test_far_from_the_limit_counts_wait_in_memory_near_it_every_process_counts_at_once(tmp_path):
    clock = Clock()
    url = f"sqlite:///{tmp_path / 'accounts.sqlite3'}"
    a, b = Accounts(url, clock=clock), Accounts(url, clock=clock)  # two processes, one database
    in_a, in_b = RequestCounter(a, flush_seconds=3600), RequestCounter(b, flush_seconds=3600)
    assert in_a.wait_before("ask:198.51.100.1", 10) == 0
    assert stored(a, "ask:198.51.100.1") == 1  # a client new to this process: written at once
    assert in_a.wait_before("ask:198.51.100.1", 10) == 0
    assert stored(a, "ask:198.51.100.1") == 1  # 2 of 10: not written yet
    in_a.flush()
    assert stored(a, "ask:198.51.100.1") == 2
    # a limit of 4: two questions in each process, then the fifth is refused by either
    assert [c.wait_before("ask:198.51.100.2", 4) for c in (in_a, in_b, in_a, in_b)] == [0, 0, 0, 0]
    assert in_a.wait_before("ask:198.51.100.2", 4) == 50.0  # seconds until 9:01
    assert in_b.wait_before("ask:198.51.100.2", 4) == 50.0
    clock.now += dt.timedelta(seconds=50)
    assert in_b.wait_before("ask:198.51.100.2", 4) == 0  # a new minute
    assert RequestCounter(a).wait_before("ask:198.51.100.2", 4) == 0  # a third process learns the count
    assert RequestCounter(b).wait_before("ask:198.51.100.2", 2) == 60.0  # the third in this minute
    for accounts in (a, b):
        accounts.engine.dispose()
