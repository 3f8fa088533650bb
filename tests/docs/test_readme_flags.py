"""README's "Server flags" table names every flag of `kato-grpc serve`, so it stays whole."""

from __future__ import annotations

import re

from kato_grpc.server.settings import build_parser
from tests.support.server import ROOT


def test_the_flags_table_names_every_serve_flag():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Server flags", 1)[1].split("\n### ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    named = set(re.findall(r"`(--[a-z0-9-]+)`", table))
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = {option for action in serve._actions for option in action.option_strings if option.startswith("--")}
    assert flags - {"--help"} <= named, sorted(flags - {"--help"} - named)
