"""`python -m stages` is an alias of the `synthaug` command."""
from stages.cli import app

app(prog_name="synthaug")
