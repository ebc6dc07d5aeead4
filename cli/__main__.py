"""``python -m edgeim.cli`` is ``im``."""
from .main import app

app(prog_name="im")
