"""Local runtime: serve each Truss with Truss's own model server, no Docker."""
