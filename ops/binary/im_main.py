"""The single-file executable's entry point: ``im`` (make binary)."""
from edgeim.cli.main import app

app(prog_name="im")
