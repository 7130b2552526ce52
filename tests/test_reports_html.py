"""The HTML report: self-contained, escaped, and saying what the runs show."""

import re
from html.parser import HTMLParser

import pytest

from magbench.errors import MagbenchError
from magbench.reports.html import report

from _reports_fixtures import PROTOCOL, corrupt_line, make_run, sanity_trio

XSS = "<script>alert(1)</script>"


class _Scan(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.img_src, self.links, self.texts, self._in_script = [], [], [], [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts.append(a)
            self._in_script = True
        if tag == "img":
            self.img_src.append(a.get("src", ""))
        if tag in ("link", "iframe", "object", "embed") or (tag == "script" and "src" in a):
            self.links.append((tag, a))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if not self._in_script:
            self.texts.append(data)


def _scan(html):
    s = _Scan()
    s.feed(html)
    return s


@pytest.fixture(scope="module")
def trio_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    sanity_trio(root, caption=XSS)
    out = report([root], root.parent / "report.html", max_samples=3)
    return out.read_text(encoding="utf-8")


def test_report_is_self_contained_with_every_image_inline(trio_report):
    scan = _scan(trio_report)
    assert scan.links == []  # no stylesheet, script src, iframe or other external resource
    assert scan.img_src and all(src.startswith(("data:image/png;base64,", "data:image/gif;base64,")) for src in scan.img_src)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", trio_report)
    assert "<style>" in trio_report


def test_caption_with_a_script_tag_shows_as_text_and_runs_nothing(trio_report):
    scan = _scan(trio_report)
    assert len(scan.scripts) == 1  # only the report's own sorting script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in trio_report
    assert XSS not in trio_report
    assert any(XSS in t for t in scan.texts)  # the browser shows it, as text


def test_method_names_and_paths_are_escaped(tmp_path):
    make_run(tmp_path / "runs", "evil", method='<img src=x onerror="alert(2)">')
    html = report([tmp_path / "runs"], tmp_path / "r.html").read_text()
    assert "onerror=\"alert(2)\"" not in html and "&lt;img src=x onerror=" in html


def test_summary_names_the_contender_that_remembers_best_and_marks_sanity_rows(trio_report):
    summary = trio_report[trio_report.index('class="summary"'):trio_report.index("<h3>Leaderboard")]
    assert '<span class="winner">zeta-mem</span>' in summary
    assert "zeta-mem remembers best of the 1 method on bestmatch_lpips (lower is better)" in summary
    assert 'class="kind-ceiling"' in trio_report and 'class="kind-floor"' in trio_report
    assert 'badge badge-ceiling' in trio_report and 'badge badge-floor' in trio_report


def test_leaderboard_tables_are_sortable_and_rows_follow_the_primary_metric(trio_report):
    table = trio_report[trio_report.index('id="cmp0-quality"'):]
    table = table[: table.index("</table>")]
    assert 'class="primary" aria-sort="ascending"' in table
    assert re.findall(r'data-method="([^"]+)"', table) == ["oracle", "zeta-mem", "repeat-last"]
    assert 'id="cmp0-efficiency"' in trio_report


def test_charts_retention_kv_and_frame_strips_are_present(trio_report):
    for heading in ("<h3>Metrics</h3>", "<h3>Quality vs speed</h3>", "<h3>Memory retention</h3>", "<h3>Memory footprint</h3>", "<h3>Samples</h3>"):
        assert heading in trio_report
    assert trio_report.count('alt="bar chart of') == 4
    assert "bestmatch_lpips vs seconds since the camera left" in trio_report
    assert trio_report.count("data:image/gif;base64,") == 3 * 3  # 3 samples x 3 methods
    assert "best-match GT" in trio_report and "GT frame 0" in trio_report
    assert trio_report.count('<details class="sample"') == 3


def test_manifests_are_in_collapsible_sections(trio_report):
    assert trio_report.count('<details class="manifest">') == 3
    runs = trio_report[trio_report.index('<section id="runs">'):]
    assert "Versions" in runs and "torch" in runs and "Hardware" in runs and "cpu_count" in runs and "seed" in runs


def test_corrupt_line_shows_as_a_warning_naming_file_and_line(tmp_path):
    run = make_run(tmp_path / "runs", "m")
    line = corrupt_line(run)
    html = report([tmp_path / "runs"], tmp_path / "r.html").read_text()
    warnings = html[html.index('id="warnings"'):]
    assert f"samples.jsonl:{line}:" in warnings[: warnings.index("</section>")]


def test_mismatched_protocols_get_separate_sections_and_a_note(tmp_path):
    make_run(tmp_path / "runs", "a", method="m")
    make_run(tmp_path / "runs", "b", method="m", protocol={**PROTOCOL, "switch_fraction": 0.5})
    html = report([tmp_path / "runs"], tmp_path / "r.html").read_text()
    assert 'id="cmp0"' in html and 'id="cmp1"' in html
    assert "never averaged together" in html


def test_missing_preview_and_failed_samples_are_reported_not_fatal(tmp_path):
    run = make_run(tmp_path / "runs", "m", failed=1)
    (run / "previews" / "s001.npz").unlink()
    html = report([tmp_path / "runs"], tmp_path / "r.html").read_text()
    assert "s001.npz: preview file missing" in html
    assert "1 sample(s) failed" in html and "generate: RuntimeError: boom" in html


def test_ceiling_off_its_best_value_raises_an_alert(tmp_path):
    make_run(tmp_path / "runs", "broken-oracle", kind="ceiling", quality=0.9)
    html = report([tmp_path / "runs"], tmp_path / "r.html").read_text()
    assert "not its best value" not in html  # the fixture's ceiling is perfect...
    make_run(tmp_path / "runs2", "oracle", kind="ceiling")
    rec = (tmp_path / "runs2" / "oracle" / "samples.jsonl")
    rec.write_text(rec.read_text().replace('"bestmatch_lpips": 0.0', '"bestmatch_lpips": 0.2', 1))
    html = report([tmp_path / "runs2"], tmp_path / "r2.html").read_text()
    assert "scores" in html and "not its best value" in html  # ...until a metric misbehaves


def test_folder_without_runs_is_a_clear_error(tmp_path):
    with pytest.raises(MagbenchError, match="no runs found"):
        report([tmp_path], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
