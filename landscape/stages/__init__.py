"""One module per pipeline stage; see ``landscape.cli``."""
