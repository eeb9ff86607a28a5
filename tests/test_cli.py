from typer.testing import CliRunner

from infersweep.cli import app


def test_cli_help_lists_no_errors() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "infersweep" in result.output.lower() or "Usage" in result.output
