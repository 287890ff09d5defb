"""Small data files for tests that feed the catalog a deliberately bad table."""

from __future__ import annotations

from pathlib import Path


def stacks_file(tmp_path: Path, extra: str) -> Path:
    """A stacks.toml with a valid default stack plus the line ``extra``."""
    path = tmp_path / "stacks.toml"
    path.write_text('[stack.default]\nattention = "fused"\nattention_rate = 1.0\n'
                    'tp_overlap = true\nfsdp_reshard = "step"\nmicro_batch = 1\nvpp = 1\n'
                    f'selective = "attention"\n{extra}\n')
    return path
