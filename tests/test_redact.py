"""Credentials in a URL never reach testbed.json or the logs (issue 16): the inventory refuses them
(tests/inventories/metrics-credentials-in-url.yaml), and what shows a URL redacts its userinfo
anyway, for a URL that came some other way."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from testbed.inventory import load_inventory
from testbed.inventory.model import Metrics
from testbed.metrics import Iteration, MetricsWriter, replay
from testbed.metrics.localstore import free_port
from testbed.redact import redact_url
from testbed.snapshot import snapshot, write_snapshot

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cret-pw"


@pytest.mark.parametrize("url, shown", [
    (f"http://dcilab:{SECRET}@127.0.0.1:8428", "http://***@127.0.0.1:8428"),
    (f"https://token{SECRET}@influx.example.net:8086/api?x=1", "https://***@influx.example.net:8086/api?x=1"),
    ("https://influx.example.net:8086", "https://influx.example.net:8086"),
    (f"http://a:{SECRET}@[::1", "<a URL that cannot be parsed (23 characters)>"),
    (f"http://influx:8086/write?db=x&u=dcilab&p={SECRET}", "http://influx:8086/write?db=x&u=dcilab&p=***"),
    (f"https://h/api?Token={SECRET}&x=1&key", "https://h/api?Token=***&x=1&key"),
])
def test_redact_url_hides_userinfo_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_inventory_refuses_credentials_in_the_metrics_url(tmp_path: Path) -> None:
    text = (ROOT / "inventory" / "emulated.yaml").read_text(encoding="utf-8")
    assert "url: http://127.0.0.1:8428" in text
    (tmp_path / "inv.yaml").write_text(text.replace("url: http://127.0.0.1:8428",
                                                    f"url: http://dcilab:{SECRET}@127.0.0.1:8428"), encoding="utf-8")
    from testbed.inventory import InventoryError
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "inv.yaml")
    [p] = info.value.problems
    assert (p.field, p.message) == ("metrics.url", "the URL carries credentials (user:password@)")
    assert "token: {env: VARIABLE_NAME}" in p.fix and SECRET not in str(info.value)


@pytest.mark.parametrize("query, names", [(f"u=dcilab&p={SECRET}", "p="), (f"token={SECRET}&db=x", "token=")])
def test_inventory_refuses_a_secret_in_the_metrics_urls_query(tmp_path: Path, query: str, names: str) -> None:
    text = (ROOT / "inventory" / "emulated.yaml").read_text(encoding="utf-8")
    (tmp_path / "inv.yaml").write_text(text.replace("url: http://127.0.0.1:8428",
                                                    f"url: http://127.0.0.1:8428/write?{query}"), encoding="utf-8")
    from testbed.inventory import InventoryError
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "inv.yaml")
    [p] = info.value.problems
    assert (p.field, p.message) == ("metrics.url", f"the URL carries a secret in its query ({names})")
    assert "token: {env: VARIABLE_NAME}" in p.fix and SECRET not in str(info.value)


def _with_metrics_url(url: str):  # type: ignore[no-untyped-def]
    """The emulated inventory with a metrics URL the schema would refuse (built some other way)."""
    inv = load_inventory(ROOT / "inventory" / "emulated.yaml")
    return inv.model_copy(update={"metrics": Metrics.model_construct(url=url, org="dcilab", bucket="dcilab",
                                                                     token=None)})


def test_testbed_json_never_holds_credentials(tmp_path: Path) -> None:
    def unreachable(_inv, name):  # type: ignore[no-untyped-def]
        raise OSError(f"{name}: not in this test")

    snap = snapshot(_with_metrics_url(f"http://dcilab:{SECRET}@127.0.0.1:8428"), connect=unreachable, timeout_s=5)
    text = write_snapshot(snap, tmp_path / "testbed.json").read_text(encoding="utf-8")
    assert SECRET not in text
    assert json.loads(text)["inventory"]["metrics"]["url"] == "http://***@127.0.0.1:8428"


def test_metrics_logs_never_hold_credentials(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dcilab.metrics")
    url = f"http://dcilab:{SECRET}@127.0.0.1:{free_port()}"        # nothing listens: down, spooled
    w = MetricsWriter(url, spool_dir=tmp_path / "spool", flush_interval_ms=100, retry_interval_ms=100,
                      max_retries=1, max_retry_delay_ms=200, max_retry_time_ms=500, timeout_ms=1000,
                      max_close_wait_ms=3000, replay_interval_s=0.3, spool_flush_interval_s=0.1,
                      health_timeout_s=0.5)
    t0 = time.time_ns() - 10**9
    for k in range(5):
        w.write(Iteration(time_ns=t0 + k * 7_000_000, step=k, duration_s=0.5, tokens_per_s=1000.0, loss=1.0,
                          run_id="t-redact"))
    left = w.close()
    assert left.spooled == 5
    res = replay(tmp_path / "spool", url)
    assert res.error and SECRET not in res.error and "***@127.0.0.1" in res.error
    messages = [r.getMessage() for r in caplog.records]
    assert any("***@127.0.0.1" in m for m in messages), messages
    assert not [m for m in messages if SECRET in m]
