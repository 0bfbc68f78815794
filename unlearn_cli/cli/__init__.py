"""The command line: one module per command; parsing, file I/O and rendering live here only."""
