"""The ``lorascope`` command line: parses arguments and calls one stage; no logic of its own."""
