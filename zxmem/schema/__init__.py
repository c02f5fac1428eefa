"""JSON Schemas of zxmem's file formats (``zxmem memgraph -S``)."""
