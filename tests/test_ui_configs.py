"""``/ui/configs``: config versions, one's canonical JSON with the plans that use it, and the
diff of two (added, removed and changed keys)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from runyard.web.ui import configs as configs_ui
from tests.helpers.ui import json_twin, ui_client

# The UI is engine-agnostic: its pages run on SQLite here; the API tests
# (test_web_api.py, test_web_actions.py) and the registry's own tests cover PostgreSQL.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def two(cli, lineage, tmp_path: Path) -> dict[str, str]:
    """The lineage fixture's config (policy-v1) and a second one that differs from it."""
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"safety_stock_periods": 3, "review": {"days": 7}}))
    made = cli.ok("config", "add", str(other), "--name", "policy-v2")
    return {**lineage, "other_id": made["config_version_id"]}


def _twin_answers(client, page_html):
    href = json_twin(page_html)
    assert href and href.startswith("/api/v1/")
    assert client.get(href).status_code == 200
    return href


def test_list_links_every_version(yard_path, two):
    with ui_client(yard_path) as client:
        page = client.get("/ui/configs")
        assert page.status_code == 200
        assert _twin_answers(client, page.text) == "/api/v1/configs"
        for cid in (two["config_version_id"], two["other_id"]):
            assert f'href="/ui/configs/{cid}"' in page.text
        assert "policy-v1" in page.text and "policy-v2" in page.text
        digest = client.get(f"/api/v1/configs/{two['other_id']}").json()["digest"]
        assert f">{digest[:12]}</code>" in page.text
        # newest first
        assert page.text.index(two["other_id"]) < page.text.index(two["config_version_id"])


def test_list_empty_state_and_keyset_pages(yard_path, cli, tmp_path, monkeypatch):
    with ui_client(yard_path) as client:
        assert "No config versions yet" in client.get("/ui/configs").text
    ids = []
    for n in range(3):
        f = tmp_path / f"c{n}.json"
        f.write_text(json.dumps({"n": n}))
        ids.append(cli.ok("config", "add", str(f))["config_version_id"])
    monkeypatch.setattr(configs_ui, "PAGE_SIZE", 2)
    with ui_client(yard_path) as client:
        first = client.get("/ui/configs").text
        assert ids[2] in first and ids[1] in first and ids[0] not in first
        older = re.search(r'<a rel="next" href="\?after=([^"]+)"', first)
        assert older
        second = client.get(f"/ui/configs?after={older.group(1)}")
        assert second.status_code == 200 and ids[0] in second.text and ids[2] not in second.text
        assert _twin_answers(client, second.text).startswith("/api/v1/configs?after=")
        assert client.get("/ui/configs?after=garbage").status_code == 422


def test_detail_shows_json_plans_and_compare_form(yard_path, two):
    cid = two["config_version_id"]
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/configs/{cid}")
        assert page.status_code == 200
        assert _twin_answers(client, page.text) == f"/api/v1/configs/{cid}"
        text = html.unescape(page.text)
        assert '"lot_size": 10,\n  "safety_stock_periods": 2' in text  # pretty, sorted
        # the plan that uses it, with its scenario by name
        assert f'href="/ui/plans/{two["plan_version_id"]}"' in page.text
        assert f'href="/ui/scenarios/{two["scenario_id"]}">base</a>' in page.text
        # compare with: a GET form listing the other versions, not itself
        assert f'action="/ui/configs/{cid}/diff"' in page.text
        assert f'<option value="{two["other_id"]}">' in page.text
        assert f'<option value="{cid}">' not in page.text
        other = client.get(f"/ui/configs/{two['other_id']}").text
        assert "No plan uses this config version yet" in other


def test_compare_form_redirects_to_the_diff(yard_path, two):
    cid, other = two["config_version_id"], two["other_id"]
    with ui_client(yard_path) as client:
        chose = client.get(f"/ui/configs/{cid}/diff", params={"other": other})
        assert chose.status_code == 303
        assert chose.headers["location"] == f"/ui/configs/{cid}/diff/{other}"
        missing = client.get(f"/ui/configs/{cid}/diff")
        assert missing.status_code == 422 and "choose a config version" in missing.text
        assert client.get(f"/ui/configs/{cid}/diff", params={"other": "a\x01"}).status_code == 422


def test_diff_table_marks_added_removed_changed(yard_path, two):
    cid, other = two["config_version_id"], two["other_id"]
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/configs/{cid}/diff/{other}")
        assert page.status_code == 200
        assert _twin_answers(client, page.text) == f"/api/v1/configs/{cid}/diff/{other}"
        text = page.text
        assert "1 added, 1 removed, 1 changed." in text
        rows = {
            m.group(1): m.group(0)
            for m in re.finditer(
                r'<tr class="change-\w+">\s*<td><code>([^<]+)</code>.*?</tr>', text, re.S
            )
        }
        assert set(rows) == {"review", "lot_size", "safety_stock_periods"}
        assert "added" in rows["review"] and 'class="diff-add"' in rows["review"]
        assert 'class="diff-del"' not in rows["review"]
        assert "<code>{&#34;days&#34;: 7}</code>" in rows["review"]
        assert (
            "removed" in rows["lot_size"] and 'class="diff-del"><code>10</code>' in rows["lot_size"]
        )
        assert 'class="diff-add"' not in rows["lot_size"]
        changed = rows["safety_stock_periods"]
        assert 'class="diff-del"><code>2</code>' in changed
        assert 'class="diff-add"><code>3</code>' in changed
        # the unified diff, coloured by line
        assert '<span class="diff-add">+  &#34;review&#34;: {</span>' in text
        assert f'href="/ui/configs/{other}/diff/{cid}"' in text  # swap sides


def test_diff_of_a_version_with_itself_is_identical(yard_path, two):
    cid = two["config_version_id"]
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/configs/{cid}/diff/{cid}")
        assert page.status_code == 200 and "These config versions are identical." in page.text
        assert "diff-add" not in page.text.split("<main>")[1]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ui/configs/cfg-nope", 404),
        ("/ui/configs/cfg-nope/diff/cfg-nope", 404),
        ("/ui/configs/{cid}/diff/cfg-nope", 404),
        ("/ui/configs/cfg-nope/diff/{cid}", 404),
        ("/ui/configs/cfg%00x", 422),
        ("/ui/configs/" + "c" * 201, 422),
        ("/ui/configs/{cid}/diff/bad%0aid", 422),
        ("/ui/configs/cfg%7fx/diff?other={cid}", 422),
    ],
)
def test_unknown_and_invalid_ids(yard_path, lineage, path, status):
    with ui_client(yard_path) as client:
        answer = client.get(path.format(cid=lineage["config_version_id"]))
        assert answer.status_code == status
        assert "<h1>" in answer.text and "Traceback" not in answer.text
