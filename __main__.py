"""`python -m synthaug` is an alias of the `synthaug` command."""
from synthaug.stages.cli import app

if __name__ == "__main__":  # a spawned worker process imports this module too
    app(prog_name="synthaug")
