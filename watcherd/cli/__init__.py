"""The ``watcherd`` command line: the parser, one module per operator command, rendering."""
