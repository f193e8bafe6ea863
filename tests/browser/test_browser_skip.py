"""Without Chromium the browser tests are skipped with a warning, or fail under REQUIRE_BROWSER."""

import os
import subprocess
import sys

from tests import ROOT


def run_browser_tests(**env: str) -> subprocess.CompletedProcess:
    """Run pytest on tests/browser in a fresh interpreter with ``env`` on top of ours."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/browser", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_chromium_the_browser_tests_are_skipped_with_a_warning_naming_the_install():
    result = run_browser_tests(CHROMIUM_PATH="/nonexistent/chromium", REQUIRE_BROWSER="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " skipped" in result.stdout and " passed" not in result.stdout
    assert "browser tests skipped: Chromium not found at /nonexistent/chromium" in result.stdout
    assert "Install Chromium with `apt-get install chromium`" in result.stdout.splitlines()[-2]


def test_with_require_browser_a_missing_chromium_fails_the_run():
    result = run_browser_tests(CHROMIUM_PATH="/nonexistent/chromium", REQUIRE_BROWSER="1")
    assert result.returncode == 1
    assert "REQUIRE_BROWSER is set but Chromium not found at /nonexistent/chromium" in result.stdout
    assert " skipped" not in result.stdout
