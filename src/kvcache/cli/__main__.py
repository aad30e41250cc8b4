"""`python -m kvcache.cli`: the same as the `kvcache` command."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    main()
