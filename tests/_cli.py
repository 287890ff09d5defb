"""Run the trnlab CLI in-process for tests: (exit status, stdout, stderr)."""

from __future__ import annotations

import contextlib
import io


def run(argv: list[str]) -> tuple[int, str, str]:
    """``trnlab argv`` -> (exit status, stdout, stderr); argparse's exit is a status too."""
    from trnlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exit_:
            rc = exit_.code
    return rc, out.getvalue(), err.getvalue()
