from fwconv.cli import entry

entry()
