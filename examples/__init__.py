"""Runnable examples: every code example of the README is one of these files.

``tests/test_examples.py`` runs each of them in CI: setup hooks are assembled
in process and exercised over HTTP or WebSocket, ``test_*.py`` files run
through pytest with a user project's configuration, and the README's code
blocks that name a file here are checked against its text. This package is
importable from the repository root (``--app examples.greeter_node:setup``)
and is not part of the installed wheel.
"""
