"""`python -m kvcache`: the same as the `kvcache` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
