"""The command line: every command explains itself, `ls` lists every component and its settings."""
import pytest

from mllmcl.cli.main import build_parser, main


def test_ls_lists_every_component_and_every_setting_with_its_default(capsys):
    from mllmcl.cl.config import profiles
    from mllmcl.cl.methods.catalog import METHODS
    from mllmcl.cl.routing.catalog import ROUTERS

    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "hf" in out
    for registry, prefix in ((METHODS, None), (ROUTERS, "router")):
        blocks = registry.settings()
        for name, _ in registry.describe():
            assert f"  {name} " in out
            for key, field in getattr(blocks.get(name), "model_fields", {}).items():
                line = f"{prefix or name}.{field.alias or key} = {field.default!r}"
                assert line in out, f"`mllmcl ls` does not show {line!r}"
    assert "ewc.lambda = 5000.0" in out and "router.shrinkage = 0.01" in out  # a method's and a router's, spelled out
    assert all(f"  {name} " in out for name in profiles())


@pytest.mark.parametrize("command", ["ls", "pretrain", "ask", "demo", "bench", "data", "score"])
def test_every_command_has_help_for_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
