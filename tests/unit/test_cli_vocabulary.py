"""One CLI vocabulary: a short flag means one thing everywhere, every option says what it does, every
command takes -h, and help reads at 80 columns (no option name cut off)."""

from __future__ import annotations

import subprocess
from collections import defaultdict

import pytest
import typer
from support.kbak_testing import KBAK

from pipeline.cli import app


def _commands(cmd=None, path=()):
    cmd = cmd or typer.main.get_command(app)
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, cmd


def _options(cmd):
    return [p for p in cmd.params if getattr(p, "param_type_name", "") == "option" and not p.hidden]


COMMANDS = [" ".join(path) for path, _ in _commands()]


def test_a_short_flag_means_one_long_option_everywhere():
    meaning: dict[str, set[str]] = defaultdict(set)
    for _path, cmd in _commands():
        for opt in _options(cmd):
            longs = [o for o in opt.opts + opt.secondary_opts if o.startswith("--")]
            for short in (o for o in opt.opts if not o.startswith("--")):
                meaning[short].add(longs[0] if longs else short)
    assert {s: m for s, m in meaning.items() if len(m) > 1} == {}


def test_every_option_has_help():
    missing = [(" ".join(path), opt.opts) for path, cmd in _commands() for opt in _options(cmd) if not opt.help]
    assert missing == []


def test_reporting_commands_take_json():
    for path, cmd in _commands():
        opts = {o for opt in _options(cmd) for o in opt.opts}
        if "--format" in opts:
            assert "--json" in opts, " ".join(path)


@pytest.mark.parametrize("command", COMMANDS)
def test_dash_h_at_80_columns_shows_whole_option_names(command):
    proc = subprocess.run(
        [KBAK, *command.split(), "-h"], capture_output=True, text=True, env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage: kbak" in proc.stdout and "…" not in proc.stdout
    assert all(len(line) <= 80 for line in proc.stdout.splitlines())
