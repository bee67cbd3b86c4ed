"""The command line: every command explains itself, `ls` lists backbones."""
import pytest

from mllmcl.cli import build_parser, main


def test_ls_lists_backbones(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "hf" in out


@pytest.mark.parametrize("command", ["ls", "pretrain", "ask", "demo", "bench", "data", "score"])
def test_every_command_has_help_for_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
