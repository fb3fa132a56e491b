"""The HTML leaderboard in a real browser: headers sort rows best first by each metric's declared direction, the
page needs nothing from the network, and the figures are drawn for a small board."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import write_result
from tsae_evals.report.figures import write_figures
from tsae_evals.report.html import to_html
from tsae_evals.report.leaderboard import Leaderboard, build_leaderboard
from tsae_evals.report.records import load_records
from tsae_evals.results import MetricInfo

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
)

# name -> (architecture, l0, explained variance, jaccard_excess (higher better), smoothness (lower better)).
# gamma's smoothness is NaN: it must sort last whichever way the column is sorted.
SAES = {
    "alpha": ("relu", 20.0, 0.91, 0.031, 0.080),
    "beta": ("topk", 40.0, 0.93, 0.012, 0.050),
    "gamma": ("tsae_t_sae", 80.0, 0.89, 0.047, math.nan),
    "delta": ("relu", 160.0, 0.95, 0.025, 0.020),
}
JACCARD = "temporal_stability.jaccard_excess"
SMOOTHNESS = "temporal_stability.smoothness"


def write_results(root: Path, saes: dict[str, tuple[str, float, float, float, float]]) -> Path:
    """A core and a temporal_stability record per SAE, as the runner lays them out."""
    core_info = {
        "sparsity.l0": MetricInfo(label="l0", higher_is_better=None, headline=True),
        "reconstruction_quality.explained_variance": MetricInfo(label="ev", higher_is_better=True, headline=True),
    }
    temporal_info = {
        "jaccard.jaccard_excess": MetricInfo(
            label="jaccard_excess",
            higher_is_better=True,
            headline=True,
            description="(score - shuffled) / (1 - shuffled).",
        ),
        "smoothness.smoothness": MetricInfo(
            label="smoothness", higher_is_better=False, headline=True, description="Mean <jump> between tokens."
        ),
        "counts.dense_excluded": MetricInfo(label="dense_excluded", higher_is_better=None, headline=True),
    }
    for name, (arch, l0, ev, jaccard, smoothness) in saes.items():
        core = {"sparsity": {"l0": l0}, "reconstruction_quality": {"explained_variance": ev}}
        cfg = {"architecture": "standard", "metadata": {"tsae_arch": arch}}
        write_result(root, "core", name, core, core_info, sae_cfg=cfg, l0=l0, explained_variance=ev)
        temporal = {
            "jaccard": {"jaccard_excess": jaccard},
            "smoothness": {"smoothness": smoothness},
            "counts": {"dense_excluded": 3},
        }
        write_result(
            root, "temporal_stability", name, temporal, temporal_info, sae_cfg=cfg, l0=l0, explained_variance=ev
        )
    return root


def _board(
    tmp_path: Path, saes: dict[str, tuple[str, float, float, float, float]] = SAES, **options: Any
) -> Leaderboard:
    return build_leaderboard(load_records([write_results(tmp_path / "eval_results", saes)]), **options)


def test_figures_are_written_for_a_small_board(tmp_path):
    board = _board(tmp_path)
    assert [column.name for column in board.columns] == [JACCARD, SMOOTHNESS, "temporal_stability.dense_excluded"]
    written = write_figures(board, tmp_path / "figures")
    assert [path.name for path in written] == ["leaderboard_l0.png", "leaderboard_temporal.png"]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 5000
    again = write_figures(board, tmp_path / "again")
    assert [path.read_bytes() for path in again] == [path.read_bytes() for path in written]


def test_nothing_to_draw_writes_no_figure(tmp_path):
    board = _board(tmp_path, {"alpha": SAES["alpha"]})
    assert write_figures(board, tmp_path / "figures") == []
    assert not (tmp_path / "figures").exists() or not any((tmp_path / "figures").iterdir())


def test_html_escapes_names_and_groups_tables(tmp_path):
    hostile = "<script>alert(1)</script>"
    saes = {**SAES, hostile: ("relu", 30.0, 0.9, 0.02, 0.03)}
    board = _board(tmp_path, saes, group_by="arch")
    page = to_html(board, [], title="A <b> title", command="tsae-evals leaderboard --title '<x>'")
    assert hostile not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>" not in page and "&lt;x&gt;" in page
    assert page.count('<table class="leaderboard"') == 3  # relu, topk, tsae_t_sae
    assert page.count("<h2>") == 3 and "<h2>relu</h2>" in page
    assert 'data-column="temporal_stability.smoothness"' in page and 'data-direction="lower"' in page
    assert 'data-value="NaN"' in page  # gamma's smoothness: a number JavaScript reads, sorted as missing


def test_a_sorted_board_marks_its_header(tmp_path):
    page = to_html(_board(tmp_path, sort="smoothness"), [])
    assert page.count(' aria-sort="') == 1
    assert (
        f'data-column="{SMOOTHNESS}" data-index="5" data-type="number" data-direction="lower" aria-sort="ascending"'
        in page
    )


# --- in Chromium ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian's packages, driven by their chromedriver (Selenium Manager never runs)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: run `bash scripts/setup.sh`, which installs Debian's chromium "
                    "and chromium-driver", pytrace=False)  # fmt: skip
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: run `bash scripts/setup.sh`", pytrace=False)
    profile = tempfile.mkdtemp(prefix="tsae-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _order(driver: Any) -> list[str]:
    return [row.get_attribute("data-sae") for row in driver.find_elements("css selector", "table.leaderboard tbody tr")]


def _click(driver: Any, column: str) -> Any:
    header = driver.find_element("css selector", f'table.leaderboard th[data-column="{column}"]')
    header.click()
    return header


def test_headers_sort_best_first_in_the_browser(tmp_path, browser):
    board = _board(tmp_path)
    figures = write_figures(board, tmp_path)
    page_path = tmp_path / "leaderboard.html"
    page = to_html(board, figures, command="tsae-evals leaderboard eval_results")
    page_path.write_text(page, encoding="utf-8")

    assert "http://" not in page and "https://" not in page
    assert page.count('src="data:image/png;base64,') == len(figures) == 2

    browser.get(page_path.as_uri())
    assert _order(browser) == sorted(SAES)  # the board's own order: by name

    by_jaccard = sorted(SAES, key=lambda name: -SAES[name][3])
    measured = [name for name in SAES if not math.isnan(SAES[name][4])]
    by_smoothness = sorted(measured, key=lambda name: SAES[name][4])

    jaccard = _click(browser, JACCARD)
    assert _order(browser) == by_jaccard == ["gamma", "alpha", "delta", "beta"]
    assert jaccard.get_attribute("aria-sort") == "descending"
    # gamma (no smoothness) starts first here, so a sort that merely left it in place would fail.
    smoothness = _click(browser, SMOOTHNESS)
    assert _order(browser) == [*by_smoothness, "gamma"] == ["delta", "beta", "alpha", "gamma"]
    assert smoothness.get_attribute("aria-sort") == "ascending"
    assert browser.find_elements("css selector", "th[aria-sort]") == [smoothness]
    _click(browser, SMOOTHNESS)
    assert _order(browser) == [*by_smoothness[::-1], "gamma"]  # no value: last either way
    assert smoothness.get_attribute("aria-sort") == "descending"

    _click(browser, JACCARD)
    assert _order(browser) == by_jaccard
    _click(browser, JACCARD)
    assert _order(browser) == by_jaccard[::-1]
    assert jaccard.get_attribute("aria-sort") == "ascending"

    _click(browser, "sae")
    assert _order(browser) == sorted(SAES)

    images = browser.find_elements("css selector", "figure img")
    assert len(images) == 2 and all(
        browser.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images
    )

    shot = tmp_path / "leaderboard.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 1000
