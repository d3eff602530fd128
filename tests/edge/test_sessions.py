"""The HLS session history under a client that makes up its User-Agent (edge/sessions.py)."""

from __future__ import annotations

import asyncio
import time

from edge.sessions import MAX_RUNS_PER_ADDRESS, SessionLog


def test_made_up_user_agents_from_one_address_share_one_run_and_a_sweep_writes_once(store, tenant):
    """A new 16 KB agent on every request was a new run each (the agent kept whole, an insert
    each when written); now an address has 16 runs of its own at most, the rest go to one."""
    history = SessionLog(store)
    now = time.time()
    for i in range(500):
        history.hls_request(tenant, "vd_x", "81.2.69.1", f"agent-{i} " + "x" * 16_000, 1000, at=now)
    history.hls_request(tenant, "vd_x", "81.2.69.2", "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0", 10, at=now)
    assert len(history._hls) == MAX_RUNS_PER_ADDRESS + 2  # its own 16, its "other" run, the neighbour's
    assert all(len(run.browser) < 100 for run in history._hls.values())  # parsed, not the agent kept
    inserts = []
    real = store.insert_json_lines
    store.insert_json_lines = lambda table, data: (inserts.append(table), real(table, data))[1]
    try:
        asyncio.run(history.sweep(idle_s=0))
    finally:
        store.insert_json_lines = real
    assert inserts == ["sessions"]
    rows = store.rows("SELECT count(), sum(bytes_sent), countIf(browser = 'Chrome') FROM sessions"
                      " WHERE tenant_id = {t:String}", {"t": tenant.tenant_id})
    assert rows == [(MAX_RUNS_PER_ADDRESS + 2, 500 * 1000 + 10, 1)]
    assert history._hls == {} and history._runs_of == {}
