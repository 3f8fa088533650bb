"""The pure KATO engine: no I/O, no globals, no clock. Start reading at `engine`."""
