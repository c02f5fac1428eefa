"""The ``zxmem top`` terminal app (Textual) and its snapshot sources."""
