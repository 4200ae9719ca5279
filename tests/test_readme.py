"""The README's Python examples run as written, and print what they say."""

import contextlib
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    code = BLOCKS[index]
    if "import torch" in code:
        pytest.importorskip("torch")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(compile(code, f"README.md example {index}", "exec"), {"__name__": "__readme__"})
    printed = stdout.getvalue().splitlines()
    # Each `print(...)  # expected` comment in the example must match what it printed.
    expected = [m.group(1).strip() for line in code.splitlines()
                if line.lstrip().startswith("print(")
                for m in [re.search(r"#\s*(.+)$", line)] if m]
    for want, got in zip(expected, printed):
        if want.startswith("~"):
            assert float(got) < 1e-5, (want, got)
        else:
            assert got.split() == want.split(), (want, got)
