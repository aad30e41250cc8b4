"""The fuzz suite: hostile arguments to every public call, on every backend.

Each test draws arguments with hypothesis (`strategies.py`) and checks the error
contract of docs/errors.md (`contract.py`): a call either succeeds or raises one
of the documented error types with a message of kvcache's own, and a refused
call leaves the whole namespace exactly as it was. Settings are derandomized and
keep no example database, so every run (and CI) tries the same examples.
"""
