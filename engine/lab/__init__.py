"""The lab on disk: the SQLite store, the per-idea git workspaces, templates and their
contract, the idea schema, and the one rule for reading and writing inside idea folders."""
