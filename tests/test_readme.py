"""Every Python snippet in README.md runs as written.

Training budgets are capped (at most 2 epochs per loop, 20 000 importance samples) so the whole
README runs in the test suite; the figures the README quotes come from the examples and
benchmarks, which run the full budgets.
"""

import re
from pathlib import Path

import pytest

import nfkit
import nfkit.reweight
from nfkit.train.loop import Loop

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_snippets():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_snippet_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Loop.run

    def capped(self):
        self.epochs = min(self.epochs, 2)
        return run(self)

    monkeypatch.setattr(Loop, "run", capped)
    importance = nfkit.reweight.importance
    monkeypatch.setattr(nfkit, "importance", lambda f, t, n, **kw: importance(f, t, min(n, 20_000)))
    exec(compile(BLOCKS[index], f"README.md block {index + 1}", "exec"), {"__name__": "readme"})
